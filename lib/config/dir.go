package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WritableDir tells whether dir can be a directory a process keeps files
// in (a spool_dir, a log_dir): a directory this process may create files
// in. An error wrapping fs.ErrNotExist: dir is missing, and MkdirAll can
// create it (the nearest directory above it that exists is one this
// process may create entries in).
func WritableDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if perr := creatable(dir); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	// access(2): the permissions, ACLs and a read-only mount (EROFS).
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return nil
}

// creatable tells whether MkdirAll can create dir, missing: the nearest of
// its parents that exists must be a directory this process may create
// entries in.
func creatable(dir string) error {
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p):
			continue
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("cannot create %s: directory %s is not writable: %w", dir, p, err)
		}
		return nil
	}
}
