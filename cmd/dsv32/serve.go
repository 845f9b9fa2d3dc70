package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dsv32/dsv32/server"
)

// serveCmd serves a model over the OpenAI-compatible HTTP API (docs/server.md).
type serveCmd struct {
	modelFlags
	Addr            string `default:"127.0.0.1:8000" help:"Address to listen on (port 0: any free port; the log line says which)."`
	ServedModelName string `placeholder:"NAME" help:"The model name clients send (default: the model directory's name)."`
	Thinking        bool   `help:"Thinking mode for requests that do not choose (DeepSeek's thinking field or chat_template_kwargs)."`
	MaxBodyBytes    int64  `default:"16777216" placeholder:"BYTES" help:"Largest request body; larger ones get 413."`
}

func (c *serveCmd) Run() error {
	rt, err := c.load()
	if err != nil {
		return err
	}
	defer rt.Close()
	name := c.ServedModelName
	if name == "" {
		name = filepath.Base(filepath.Clean(rt.dir))
	}
	srv, err := server.New(rt.eng, rt.tok, server.Config{ModelName: name, Thinking: c.Thinking, MaxBodyBytes: c.MaxBodyBytes})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		slog.Info("shutting down: waiting up to 10 s for running requests")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
	}()
	slog.Info("listening", "addr", "http://"+ln.Addr().String(), "model", name, "thinking", c.Thinking)
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
