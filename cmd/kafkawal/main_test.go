package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		code     int
		out, err string // substrings of stdout and stderr; "" = must be empty
	}{
		{"no args", nil, 2, "", "usage:"},
		{"help", []string{"help"}, 0, "kafkawal inspect DIR [--json]", ""},
		{"--help", []string{"--help"}, 0, "kafkawal verify DIR", ""},
		{"help inspect", []string{"help", "inspect"}, 0, "backlog", ""},
		{"help dump", []string{"help", "dump"}, 0, "value_b64", ""},
		{"inspect -h", []string{"inspect", "-h"}, 0, "usage: kafkawal inspect DIR [--json]", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", `unknown command "nope"`},
		{"help hidden", []string{"help", "drill-child"}, 2, "", `unknown command "drill-child"`},
		{"unknown command", []string{"frobnicate"}, 2, "", `kafkawal: unknown command "frobnicate"; run 'kafkawal help'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cli(c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d", r.code, c.code)
			}
			check := func(what, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", what, got, want)
				}
			}
			check("stdout", r.stdout, c.out)
			check("stderr", r.stderr, c.err)
		})
	}
	if r := cli(); strings.Contains(r.stderr, "drill-child") {
		t.Errorf("usage lists the hidden drill-child command")
	}
}

// TestBadInput: every command answers bad input with one clear line on
// stderr, nothing on stdout, exit 2, and no panic.
func TestBadInput(t *testing.T) {
	good := t.TempDir()
	writeLog(t, good, 20, 0)

	notWAL := t.TempDir()
	if err := os.WriteFile(filepath.Join(notWAL, "notes.txt"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(notWAL, "notes.txt")

	// A segment that cannot be read: a symlink loop (chmod 000 would not
	// stop root, which the tests may run as).
	unreadable := t.TempDir()
	writeLog(t, unreadable, 20, 0)
	seg := filepath.Join(unreadable, "segments", "00000000000000000001")
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(seg), seg); err != nil {
		t.Fatal(err)
	}
	// A cursor slot that cannot be read: a directory in its place.
	badCursor := t.TempDir()
	writeLog(t, badCursor, 20, 0)
	os.Remove(filepath.Join(badCursor, "cursor.0")) // Open stored the cursor there
	if err := os.Mkdir(filepath.Join(badCursor, "cursor.0"), 0o700); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope")

	cases := []struct {
		name string
		args []string
		want string // in the stderr line
	}{
		{"inspect missing dir", []string{"inspect", missing}, "no such directory"},
		{"verify missing dir", []string{"verify", missing}, "no such directory"},
		{"dump missing dir", []string{"dump", missing}, "no such directory"},
		{"inspect not a WAL", []string{"inspect", notWAL}, "not a kafkawal directory"},
		{"verify not a WAL", []string{"verify", notWAL}, "not a kafkawal directory"},
		{"dump not a WAL", []string{"dump", notWAL, "--dead"}, "not a kafkawal directory"},
		{"inspect a file", []string{"inspect", file}, "not a directory"},
		{"inspect no DIR", []string{"inspect"}, "missing DIR"},
		{"verify two DIRs", []string{"verify", good, good}, "unexpected argument"},
		{"inspect bad flag", []string{"inspect", good, "--yaml"}, "flag provided but not defined: -yaml"},
		{"dump bad --from", []string{"dump", good, "--from", "abc"}, `invalid value "abc" for flag -from`},
		{"dump negative --limit", []string{"dump", good, "--limit", "-3"}, "--limit -3 is negative"},
		{"dump --from without value", []string{"dump", good, "--from"}, "flag needs an argument: -from"},
		{"verify unreadable segment", []string{"verify", unreadable}, "00000000000000000001: too many levels of symbolic links"},
		{"dump unreadable segment", []string{"dump", unreadable}, "00000000000000000001: too many levels of symbolic links"},
		{"inspect unreadable segment", []string{"inspect", unreadable}, "00000000000000000001: too many levels of symbolic links"},
		{"inspect unreadable cursor", []string{"inspect", badCursor}, "cursor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cli(c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stdout %q)", r.code, r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "kafkawal "+c.args[0]+": ") || !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr = %q, want \"kafkawal %s: ...%s...\"", r.stderr, c.args[0], c.want)
			}
			if strings.Contains(r.stderr, "kafkawal: kafkawal") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr is not an operator's line: %q", r.stderr)
			}
		})
	}
}

func TestDrillDispatch(t *testing.T) {
	// Looked up, not run: drill starts brokers and children.
	for _, c := range []struct {
		name   string
		hidden bool
	}{{"drill", false}, {"drill-child", true}} {
		cmd := lookup(c.name)
		if cmd == nil || cmd.run == nil || cmd.hidden != c.hidden {
			t.Errorf("%s: dispatch entry %+v, want one with hidden=%v", c.name, cmd, c.hidden)
		}
	}
}
