module github.com/posd-dev/posd

go 1.26.8

require (
	github.com/creack/pty v1.1.24 // indirect
	github.com/moov-io/bertlv v0.1.0 // indirect
	github.com/moov-io/iso8583 v0.26.1 // indirect
	github.com/yerden/go-util v1.1.4 // indirect
	go.bug.st/serial v1.8.0 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.43.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)
