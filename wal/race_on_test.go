//go:build race

package wal

// raceEnabled scales the heaviest scenarios down under the race detector,
// which slows them several times; .ci/run also runs them at full size
// without it.
const raceEnabled = true
