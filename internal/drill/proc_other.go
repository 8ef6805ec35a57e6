//go:build !linux

package drill

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the child in a process group of its own, so that a
// terminal's Ctrl-C reaches only the drill, which then kills it. Without
// Linux's Pdeathsig, a child whose drill died learns it at its next ledger
// write and exits.
func setChildAttrs(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}
