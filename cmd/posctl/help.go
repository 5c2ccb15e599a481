package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// wantsHelp reports whether a command's arguments ask for its usage.
func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}

// commandHelp prints the usage of one command (posctl CMD -h, posctl help CMD) on stdout
// and exits 0; an unknown command gets the whole usage on stderr and exit 2.
func commandHelp(cmd string, stdout, stderr io.Writer) int {
	text := commandUsage(cmd)
	if text == "" {
		fmt.Fprintf(stderr, "posctl: unknown command %q\n%s", cmd, usage)
		return 2
	}
	fmt.Fprint(stdout, text)
	return 0
}

// commandUsage is the usage of cmd: its entries in posctl's usage (an entry starts with
// the command at two spaces' indent; deeper lines continue it), and the general flags;
// firmware has its own. "" for an unknown command.
func commandUsage(cmd string) string {
	if cmd == "firmware" {
		return firmwareUsage + globalFlags()
	}
	var b strings.Builder
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   "):
			first, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			in = first == cmd
		case strings.HasPrefix(line, "   "):
			// a continuation: kept when its entry is
		default:
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "usage: posctl [--api URL] " + cmd + " ...\n" + b.String() + globalFlags()
}

// globalFlags is the tail of posctl's usage: the flags every command takes.
func globalFlags() string {
	_, tail, _ := strings.Cut(usage, "\n--api:")
	return "--api:" + tail
}
