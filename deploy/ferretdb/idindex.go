package main

// FerretDB v1.24.2's SQLite backend pushes a filter's `_id: <string|ObjectID>` down as
// `WHERE _ferretdb_sjson->'$._id' = ?`, but the unique index it creates is on
// `_ferretdb_sjson->"_id"`. SQLite matches expression indexes syntactically, so the
// pushed-down query still scans the whole table (measured: 12 ms per find and 60 ms per
// update at 20k documents). This sweeper adds a plain index on the exact expression the
// queries use, which makes `_id` lookups and updates O(log n). The extra index is not in
// FerretDB's metadata, so clients never see it; dropping a collection drops it with the table.
//
// The sweeper's own connection to a database must not outlive the database: FerretDB deletes a
// dropped database's file, and a connection still open on it kept its -wal file (hundreds of MB
// for a benchmark's payments database) on disk for good. So connections to files that are gone or
// replaced are closed, and -wal/-shm files left without their database are removed.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite"
)

const pushdownIndexSuffix = "__id_pushdown"

type handle struct {
	db  *sql.DB
	ino uint64
}

type idIndexer struct {
	dir    string
	logger *slog.Logger
	dbs    map[string]handle
	// orphanAge: a -wal/-shm file without its database is removed only when untouched this long,
	// so a database being created under a dropped one's name is never touched.
	orphanAge time.Duration
}

func newIDIndexer(dir string, logger *slog.Logger, orphanAge time.Duration) *idIndexer {
	return &idIndexer{dir: dir, logger: logger, dbs: map[string]handle{}, orphanAge: orphanAge}
}

func inode(path string) (uint64, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino, true
	}
	return 0, true
}

// run sweeps every interval until ctx is done.
func (x *idIndexer) run(ctx context.Context, interval time.Duration) {
	defer x.close()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		x.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (x *idIndexer) sweep(ctx context.Context) {
	for path, h := range x.dbs { // dropped (or dropped and made again): let go of the old file
		if ino, ok := inode(path); !ok || ino != h.ino {
			h.db.Close()
			delete(x.dbs, path)
		}
	}
	x.removeOrphans()
	files, _ := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	for _, f := range files {
		if err := x.sweepFile(ctx, f); err != nil && ctx.Err() == nil {
			x.logger.Warn("id index sweep", "file", f, "err", err)
		}
	}
}

// removeOrphans deletes -wal/-shm files whose database file is gone, once they are old enough.
func (x *idIndexer) removeOrphans() {
	for _, suffix := range []string{"-wal", "-shm"} {
		side, _ := filepath.Glob(filepath.Join(x.dir, "*.sqlite"+suffix))
		for _, f := range side {
			if _, ok := inode(strings.TrimSuffix(f, suffix)); ok {
				continue
			}
			st, err := os.Stat(f)
			if err != nil || time.Since(st.ModTime()) < x.orphanAge {
				continue
			}
			if err := os.Remove(f); err == nil {
				x.logger.Debug("removed a dropped database's file", "file", filepath.Base(f))
			}
		}
	}
}

func (x *idIndexer) sweepFile(ctx context.Context, path string) error {
	h, ok := x.dbs[path]
	if !ok {
		ino, exists := inode(path)
		if !exists {
			return nil
		}
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		h = handle{db: db, ino: ino}
		x.dbs[path] = h
	}
	db := h.db

	rows, err := db.QueryContext(ctx, `SELECT m.name FROM sqlite_master m
		WHERE m.type = 'table' AND m.name NOT LIKE '\_ferretdb\_%' ESCAPE '\'
		AND NOT EXISTS (SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.name = m.name || ?)`,
		pushdownIndexSuffix)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	rows.Close()

	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+pushdownIndexSuffix, t)
		if _, err := db.ExecContext(ctx, q); err != nil {
			// the table may have been dropped between the listing and now
			if strings.Contains(err.Error(), "no such table") {
				continue
			}
			return err
		}
		x.logger.Debug("added _id pushdown index", "file", filepath.Base(path), "table", t)
	}
	return nil
}

func (x *idIndexer) close() {
	for _, h := range x.dbs {
		h.db.Close()
	}
}
