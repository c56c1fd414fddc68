package bencode

import (
	"math"
	"testing"

	"github.com/zeebo/bencode"
)

func TestAppendMatchesIndependentDecoder(t *testing.T) {
	tests := []struct {
		name  string
		build func([]byte) []byte
		want  any
	}{
		{"zero", func(b []byte) []byte { return AppendInt(b, 0) }, int64(0)},
		{"negative", func(b []byte) []byte { return AppendInt(b, -42) }, int64(-42)},
		{"min int64", func(b []byte) []byte { return AppendInt(b, math.MinInt64) }, int64(math.MinInt64)},
		{"max uint63", func(b []byte) []byte { return AppendUint(b, math.MaxInt64) }, int64(math.MaxInt64)},
		{"empty string", func(b []byte) []byte { return AppendString(b, "") }, ""},
		{"binary string", func(b []byte) []byte { return AppendBytes(b, []byte{0, 'e', ':', 0xff}) }, "\x00e:\xff"},
		{"header then content", func(b []byte) []byte { return append(AppendStringHeader(b, 3), "abc"...) }, "abc"},
		{"dict", func(b []byte) []byte {
			b = append(b, Dict)
			b = AppendKey(b, "a")
			b = AppendInt(b, 1)
			b = AppendKey(b, "b")
			b = append(b, List)
			b = AppendString(b, "x")
			b = append(b, End)
			return append(b, End)
		}, map[string]any{"a": int64(1), "b": []any{"x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.build(nil)
			var got any
			if err := bencode.DecodeBytes(out, &got); err != nil {
				t.Fatalf("decode %q: %v", out, err)
			}
			if !equal(got, tt.want) {
				t.Fatalf("decoded %#v from %q, want %#v", got, out, tt.want)
			}
		})
	}
}

func TestAppendExactBytes(t *testing.T) {
	if got := string(AppendUint(nil, math.MaxUint64)); got != "i18446744073709551615e" {
		t.Fatalf("AppendUint(MaxUint64) = %q", got)
	}
	if got := string(AppendString([]byte("x"), "spam")); got != "x4:spam" {
		t.Fatalf("AppendString appended %q", got)
	}
}

func TestAppendDoesNotAllocateWithCapacity(t *testing.T) {
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendInt(buf[:0], 1800)
		b = AppendString(b, "failure reason")
		_ = AppendUint(b, 12345)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per run, want 0", allocs)
	}
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if !equal(v, b[k]) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
