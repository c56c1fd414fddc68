package registry

import (
	"strings"
	"testing"
)

type driver struct{ name string }

func TestRegisterAndLookup(t *testing.T) {
	r := New[*driver]("cache")
	a, b := &driver{"a"}, &driver{"b"}
	r.Register("beta", b)
	r.Register("alpha", a)
	if got, err := r.Lookup("alpha"); err != nil || got != a {
		t.Fatalf("Lookup(alpha) = %v, %v", got, err)
	}
	if names := strings.Join(r.Names(), ","); names != "alpha,beta" {
		t.Fatalf("Names() = %s, want sorted alpha,beta", names)
	}
	_, err := r.Lookup("gamma")
	if err == nil || err.Error() != `unknown cache driver "gamma" (registered: [alpha beta])` {
		t.Fatalf("Lookup(gamma) error = %v", err)
	}
}

func TestRegisterPanicsOnMistakes(t *testing.T) {
	r := New[*driver]("storage")
	r.Register("x", &driver{})
	for name, register := range map[string]func(){
		"duplicate": func() { r.Register("x", &driver{}) },
		"nil":       func() { r.Register("y", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			register()
		})
	}
}
