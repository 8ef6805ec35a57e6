package drill

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the child in a process group of its own, so that a
// terminal's Ctrl-C reaches only the drill, which then kills it, and has
// the kernel SIGKILL it should the drill itself die without cleaning up.
func setChildAttrs(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
