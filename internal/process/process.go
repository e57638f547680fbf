// Package process holds what every Sluice binary does the same way at
// start: build its logger from --log-level, and turn SIGINT/SIGTERM into a
// cancelled context, where a second signal exits at once.
package process

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Logger returns a text logger on stderr at level ("debug", "info", "warn",
// "error"); a bad level is an error naming --log-level.
func Logger(level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level (%q): %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// SignalContext is cancelled on the first SIGINT or SIGTERM, which starts a
// graceful shutdown; a second signal exits the process at once with status
// 2. stop releases the signal handlers.
func SignalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			os.Exit(2)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
