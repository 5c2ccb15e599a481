package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// rawSkeleton is the skeleton daemon on blocking system calls alone, as a C daemon would
// be written: one thread, no poller, no scheduler between a read and what follows it
// (RawSyscall: the runtime is not told, so it hands nothing over while the thread waits in
// the kernel). It serves one till connection at a time, HTTP/1.1 kept alive, reading
// nothing of a request but its Content-Length; the query's turns parameter says how often
// to turn the line. It prints "SKELETON READY -" when it listens, and returns only on an
// error.
func rawSkeleton(sock, ptyPath, hostAddr, logPath string, answer []byte) error {
	runtime.LockOSThread()
	line, err := syscall.Open(ptyPath, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", ptyPath, err)
	}
	host, err := rawDial(hostAddr)
	if err != nil {
		return err
	}
	logFD, err := syscall.Open(logPath, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	ln, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := syscall.Bind(ln, &syscall.SockaddrUnix{Name: sock}); err != nil {
		return fmt.Errorf("bind %s: %w", sock, err)
	}
	if err := syscall.Listen(ln, 8); err != nil {
		return err
	}
	head := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(answer)) + "\r\n\r\n")
	reply := append(head, answer...)
	var (
		page        = make([]byte, 4096)
		lineBuf     = make([]byte, 64)
		frame, back = make([]byte, 2+220), make([]byte, 2+220)
	)
	frame[0], frame[1] = 0, 220
	turn := func() error {
		if err := rawWrite(line, lineBuf); err != nil {
			return err
		}
		return rawReadFull(line, lineBuf)
	}
	durable := func(at int64) error {
		if _, err := syscall.Pwrite(logFD, page, at); err != nil {
			return err
		}
		if _, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, uintptr(logFD), 0, 0); e != 0 {
			return e
		}
		return nil
	}
	sale := skeletonSale{turn: turn, durable: durable, acquirer: func() error {
		if err := rawWrite(host, frame); err != nil {
			return err
		}
		return rawReadFull(host, back)
	}}.run
	fmt.Println("SKELETON READY -")
	buf := make([]byte, 64<<10)
	for {
		c, _, err := syscall.Accept4(ln, syscall.SOCK_CLOEXEC)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		for {
			turns, err := rawRequest(c, buf)
			if err != nil {
				break // the till went away: take the next connection
			}
			if err := sale(turns); err != nil {
				return err
			}
			if err := rawWrite(c, reply); err != nil {
				break
			}
		}
		syscall.Close(c)
	}
}

// rawRequest reads one HTTP request from fd into buf and returns the turns its query asks
// for. A till waits for each answer before it sends again, so a read holds nothing of the
// next request; the head is Go's http.Client's ("Content-Length" spelt so).
func rawRequest(fd int, buf []byte) (turns int, err error) {
	have := 0
	for {
		if end := bytes.Index(buf[:have], []byte("\r\n\r\n")); end >= 0 {
			head := buf[:end]
			length := 0
			if i := bytes.Index(head, []byte("\r\nContent-Length:")); i >= 0 {
				v := head[i+len("\r\nContent-Length:"):]
				if j := bytes.IndexByte(v, '\r'); j >= 0 {
					v = v[:j]
				}
				if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
					return 0, err
				}
			}
			n := end + 4 + length
			if n > len(buf) {
				return 0, errors.New("request too long")
			}
			for have < n {
				m, err := rawRead(fd, buf[have:])
				if err != nil {
					return 0, err
				}
				have += m
			}
			if i := bytes.Index(head, []byte("turns=")); i >= 0 {
				v := head[i+len("turns="):]
				if j := bytes.IndexAny(v, " &"); j >= 0 {
					v = v[:j]
				}
				turns, err = strconv.Atoi(string(v))
			}
			return turns, err
		}
		if have == len(buf) {
			return 0, errors.New("request head too long")
		}
		m, err := rawRead(fd, buf[have:])
		if err != nil {
			return 0, err
		}
		have += m
	}
}

func rawDial(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

func rawRead(fd int, b []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, e
		case n == 0:
			return 0, errors.New("end of file")
		}
		return int(n), nil
	}
}

func rawReadFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := rawRead(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func rawWrite(fd int, b []byte) error {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		b = b[n:]
	}
	return nil
}
