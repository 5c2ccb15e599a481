package fwapi

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/posd-dev/posd/firmware"
)

// Client calls posd's firmware endpoints. It is safe for concurrent use.
type Client struct {
	// Base is posd's API base URL, such as http://127.0.0.1:8765, without
	// a trailing slash. Required.
	Base string
	// HTTP sends the requests. Default http.DefaultClient.
	HTTP *http.Client
}

// APIError is an error answer from posd. It is plain data, safe for
// concurrent reads.
type APIError struct {
	Status  int    // HTTP status; 200 when the stream's last line was an error
	Kind    string // see the package documentation
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("posd is not answering at %s: %w", c.Base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return nil, &APIError{Status: resp.StatusCode, Kind: eb.Kind, Message: eb.Error}
		}
		return nil, &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("%s: HTTP %d: %s", req.URL.Path, resp.StatusCode, strings.TrimSpace(string(b)))}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", path, err)
	}
	return nil
}

// Status returns posd's firmware status.
func (c *Client) Status(ctx context.Context) (firmware.Status, error) {
	var st firmware.Status
	return st, c.getJSON(ctx, "/v1/firmware/status", &st)
}

// Events returns the event log's records after sequence number after, and
// the chain error posd found ("" when the log is intact).
func (c *Client) Events(ctx context.Context, after uint64) ([]firmware.Event, string, error) {
	var body EventsBody
	err := c.getJSON(ctx, "/v1/firmware/events?after="+strconv.FormatUint(after, 10), &body)
	return body.Events, body.ChainError, err
}

// Rollback asks posd to make the other slot active.
func (c *Client) Rollback(ctx context.Context, who string) (firmware.Result, error) {
	var res firmware.Result
	b, _ := json.Marshal(map[string]string{"who": who})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/firmware/rollback", bytes.NewReader(b))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return res, fmt.Errorf("rollback: unreadable answer: %w", err)
	}
	return res, nil
}

// Op names an operation of Install. It is a plain value, safe for
// concurrent use.
type Op string

// Operations of Install.
const (
	OpInstall Op = "install"        // install into the inactive slot
	OpCheck   Op = "check"          // verify only
	OpPINPad  Op = "pinpad/install" // push the PIN pad image
)

// Install runs op on the bundle at source and calls progress (if not nil)
// with each progress line. An https:// source is fetched by posd; a local
// bundle file is uploaded, and a local bundle directory is uploaded as a
// tar stream made on the fly, so posd need not be able to read the
// technician's files.
func (c *Client) Install(ctx context.Context, op Op, source, who string, progress func(firmware.Progress)) (firmware.Result, error) {
	if strings.TrimSpace(who) == "" {
		return firmware.Result{}, &APIError{Kind: "no-who", Message: firmware.ErrNoWho.Error()}
	}
	var (
		body  io.Reader
		ctype string
		q     = url.Values{}
	)
	if strings.Contains(source, "://") {
		b, _ := json.Marshal(request{Source: source, Who: who})
		body, ctype = bytes.NewReader(b), "application/json"
	} else {
		fi, err := os.Stat(source)
		if err != nil {
			return firmware.Result{}, fmt.Errorf("bundle: %w", err)
		}
		q.Set("who", who)
		q.Set("name", filepath.Base(source))
		ctype = "application/x-tar"
		if fi.IsDir() {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(TarBundleDir(pw, source)) }()
			defer pr.Close()
			body = pr
		} else {
			f, err := os.Open(source)
			if err != nil {
				return firmware.Result{}, fmt.Errorf("bundle: %w", err)
			}
			defer f.Close()
			body = f
		}
	}
	u := c.Base + "/v1/firmware/" + string(op)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return firmware.Result{}, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.do(req)
	if err != nil {
		return firmware.Result{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return firmware.Result{}, fmt.Errorf("unreadable progress line from posd: %w", err)
		}
		switch {
		case l.Progress != nil:
			if progress != nil {
				progress(*l.Progress)
			}
		case l.Result != nil:
			return *l.Result, nil
		case l.Error != "":
			return firmware.Result{}, &APIError{Status: resp.StatusCode, Kind: l.Kind, Message: l.Error}
		}
	}
	if err := sc.Err(); err != nil {
		return firmware.Result{}, fmt.Errorf("posd's answer broke off: %w", err)
	}
	return firmware.Result{}, errors.New("posd's answer ended without a result; see posctl firmware status")
}

// TarBundleDir writes the bundle directory dir as a bundle tar stream:
// metadata/*.json first, then targets/*.
func TarBundleDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	for _, sub := range []string{"metadata", "targets"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return fmt.Errorf("bundle directory: %w", err)
		}
		var names []string
		for _, e := range ents {
			if e.Type().IsRegular() && (sub == "targets" || strings.HasSuffix(e.Name(), ".json")) {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			if err := addTar(tw, sub+"/"+n, filepath.Join(dir, sub, n)); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func addTar(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bundle directory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("bundle directory: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("bundle directory: %s: %w", name, err)
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("bundle directory: %s: %w", name, err)
	}
	return nil
}
