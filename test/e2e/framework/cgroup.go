//go:build e2e

package framework

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const cgroupFS = "/sys/fs/cgroup"

// cgroup is the test's own cgroup, the same path in every hierarchy: kubelet's cgroupRoot, so
// every pod's cgroup lives under it and is found and removed at the end. It sits under the
// test's own memory cgroup, so the pods' memory counts where the test's does.
type cgroup struct {
	path    string   // e.g. /parent/opview-e2e-123
	created []string // folders created (every hierarchy), parents first
}

// cgroupFor names the test's cgroup: leaf under the path of this process's memory cgroup.
func cgroupFor(leaf string) *cgroup {
	parent := "/"
	if f, err := os.Open("/proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// hierarchy-ID:controllers:path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
				parent = parts[2]
			}
		}
		_ = f.Close()
	}
	return &cgroup{path: filepath.Join(parent, leaf)}
}

// hierarchies are the mounted cgroup v1 hierarchies (or the v2 root alone).
func hierarchies() []string {
	if _, err := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers")); err == nil {
		return []string{cgroupFS}
	}
	entries, _ := os.ReadDir(cgroupFS)
	var hs []string
	for _, e := range entries {
		p := filepath.Join(cgroupFS, e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() { // the cpu,cpuacct style links are skipped
			if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
				hs = append(hs, p)
			}
		}
	}
	return hs
}

// create makes the cgroup's folders in every hierarchy; cpuset levels get their parent's cpus
// and mems (v1 refuses tasks in a cpuset without them).
func (cg *cgroup) create() error {
	hs := hierarchies()
	if len(hs) == 0 {
		return fmt.Errorf("no cgroup hierarchy under %s", cgroupFS)
	}
	for _, h := range hs {
		dir := h
		for _, part := range strings.Split(strings.Trim(cg.path, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if _, err := os.Stat(dir); err == nil {
				continue
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			cg.created = append(cg.created, dir)
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
					}
				}
			}
		}
	}
	return nil
}

// pids lists the processes in the cgroup and below, in any hierarchy.
func (cg *cgroup) pids() []int {
	seen := map[int]bool{}
	for _, h := range hierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, cg.path), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	var pids []int
	for pid := range seen {
		pids = append(pids, pid)
	}
	return pids
}

// remove deletes the cgroup and everything below it (kubelet's kubepods tree), deepest first,
// then the parents that create made. Its processes must be gone.
func (cg *cgroup) remove() error {
	err := cg.removeTree(false)
	// The parents are shared with any other run of the test under the same cgroup: removed when
	// empty, else left to the last one.
	for i := len(cg.created) - 1; i >= 0; i-- {
		_ = os.Remove(cg.created[i])
	}
	return err
}

// removeBelow deletes every cgroup below this one (a node's pods), keeping it.
func (cg *cgroup) removeBelow() error { return cg.removeTree(true) }

func (cg *cgroup) removeTree(keepRoot bool) error {
	var errs []error
	for _, h := range hierarchies() {
		root := filepath.Join(h, cg.path)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && !(keepRoot && p == root) {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			errs = append(errs, rmdirRetry(dirs[i]))
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes an empty cgroup folder; the kernel may report it busy for a moment after
// its last process exits.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // polling the kernel, not synchronising
	}
	return err
}
