package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrBinariesNotFound reports that no PostgreSQL server installation was found.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; " +
	"install PostgreSQL (e.g. apt-get install -y postgresql) or configure the binary directory")

// debianBinGlob matches the per-version binary directories of Debian-style installations.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// findBinaries implements FindBinaries.
func findBinaries(hint string) (string, error) {
	if hint != "" {
		if missing := missingBinaries(hint); len(missing) > 0 {
			return "", fmt.Errorf("find binaries: %s lacks %s: %w",
				hint, strings.Join(missing, ", "), ErrBinariesNotFound)
		}
		return hint, nil
	}

	candidates, err := versionedBinDirs()
	if err != nil {
		return "", fmt.Errorf("find binaries: %w", err)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(resolved))
		}
	}
	for _, dir := range candidates {
		if len(missingBinaries(dir)) == 0 {
			return dir, nil
		}
	}
	return "", fmt.Errorf("find binaries: searched %s and PATH: %w", debianBinGlob, ErrBinariesNotFound)
}

// versionedBinDirs lists the directories matching debianBinGlob ordered by
// descending version number (numeric, so 15 sorts before 9.6).
func versionedBinDirs() ([]string, error) {
	dirs, err := filepath.Glob(debianBinGlob)
	if err != nil {
		return nil, fmt.Errorf("glob %s: %w", debianBinGlob, err)
	}
	slices.SortStableFunc(dirs, func(a, b string) int {
		return slices.Compare(versionOf(b), versionOf(a))
	})
	return dirs, nil
}

// versionOf extracts the numeric components of the version directory in a
// path such as /usr/lib/postgresql/15/bin; unparsable parts count as -1.
func versionOf(binDir string) []int {
	parts := strings.Split(filepath.Base(filepath.Dir(binDir)), ".")
	version := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			n = -1
		}
		version[i] = n
	}
	return version
}

// missingBinaries returns the required programs that are absent or not
// executable in dir.
func missingBinaries(dir string) []string {
	var missing []string
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return missing
}
