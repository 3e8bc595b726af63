// Command ferretdb-launcher runs embedded FerretDB (MongoDB wire protocol) on SQLite.
//
// It exists because `go install .../cmd/ferretdb@v1.24.2` panics at start (the published
// module lacks build/version/version.txt); embedding the library in our own main module
// avoids that check. Used for local development and CI only; production runs MongoDB 7.
//
// deploy/local.sh builds it with deploy/ferretdb/patches applied to a copy of FerretDB's module
// (deploy/ferretdb/build); a plain `go build` here gives the unpatched launcher.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP listen address")
	dataDir := flag.String("data", envOr("FERRETDB_DATA_DIR", "./var/ferretdb"), "SQLite data directory")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "warn"), "debug|info|warn|error")
	orphanAge := flag.Duration("orphan-age", time.Minute, "remove a dropped database's -wal/-shm files this long after their last change")
	syncMode := flag.String("sync", envOr("FERRETDB_SQLITE_SYNC", "normal"), "SQLite synchronous pragma: full|normal")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "bad log level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		logger.Error("data dir", "err", err)
		os.Exit(1)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		logger.Error("data dir", "err", err)
		os.Exit(1)
	}

	if *syncMode != "full" && *syncMode != "normal" {
		fmt.Fprintf(os.Stderr, "bad -sync %q: full or normal\n", *syncMode)
		os.Exit(2)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  "sqlite",
		// WAL with synchronous=normal: a commit survives a crash of this process (a store restart
		// loses nothing) and only an OS crash or power cut can drop the last commits, much like
		// MongoDB's default journal commit interval. synchronous=full fsyncs every commit.
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(" + *syncMode + ")",
	})
	if err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	go newIDIndexer(abs, logger, *orphanAge).run(ctx, 500*time.Millisecond)

	fmt.Fprintf(os.Stderr, "ferretdb listening on %s, data in %s\n", f.MongoDBURI(), abs)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		logger.Error("run", "err", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "ferretdb stopped")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
