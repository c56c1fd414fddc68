package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/storage"
)

// migrator is implemented by storage drivers that ship the schema they
// expect and can create or update it (postgres). Migrate applies what the
// database lacks and returns the names of what it applied.
type migrator interface {
	Migrate(ctx context.Context) (applied []string, err error)
}

// migrateMain runs `chihaya migrate -config FILE`: it opens the storage the
// file configures and brings its schema up to date, printing each
// migration it applies. It returns the exit status.
func migrateMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chihaya migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the JSON configuration file whose storage block names the database (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chihaya migrate -config FILE\n\nCreates or updates the storage driver's schema in the configured database; running it again applies nothing.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	// Ctrl-C ends the migration's transaction, which rolls it back.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	applied, err := migrate(ctx, *configPath)
	if err != nil {
		fmt.Fprintln(stderr, "chihaya migrate:", err)
		return 1
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "the schema is up to date; nothing to apply")
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "applied", name)
	}
	return 0
}

func migrate(ctx context.Context, configPath string) ([]string, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	sc := cfg.Storage
	if sc.Name == "" {
		return nil, errors.New("storage.driver is not set: an open tracker has no database to migrate")
	}
	store, err := storage.Open(sc.Name, sc.Config)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer store.Close()
	m, ok := store.(migrator)
	if !ok {
		return nil, fmt.Errorf("storage driver %q works on the web application's own schema and ships none to migrate", sc.Name)
	}
	return m.Migrate(ctx)
}

// runSubcommand runs the subcommand named by args[0], if it is one, and
// reports whether it did.
func runSubcommand(args []string) (status int, ok bool) {
	if len(args) > 0 && args[0] == "migrate" {
		return migrateMain(args[1:], os.Stdout, os.Stderr), true
	}
	return 0, false
}
