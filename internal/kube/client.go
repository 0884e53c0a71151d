package kube

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Client talks to the Kubernetes API over plain REST (JSON). cloonix
// needs a handful of calls (create, get, list, patch, delete of a few
// kinds, and exec); client-go would add some 40 modules and ~30 MB to a
// binary that is copied into the switch image, so it is not used.
type Client struct {
	Server string // https://host:port
	http   *http.Client
	token  string
}

// kubeconfig is the part of a kubeconfig file cloonix reads.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server   string `yaml:"server"`
			CA       string `yaml:"certificate-authority"`
			CAData   string `yaml:"certificate-authority-data"`
			Insecure bool   `yaml:"insecure-skip-tls-verify"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Cert     string `yaml:"client-certificate"`
			CertData string `yaml:"client-certificate-data"`
			Key      string `yaml:"client-key"`
			KeyData  string `yaml:"client-key-data"`
			Token    string `yaml:"token"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// KubeconfigPath is --kubeconfig, else $KUBECONFIG (its first file), else
// ~/.kube/config.
func KubeconfigPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return strings.Split(env, ":")[0]
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".kube", "config")
}

// pemOf reads inline base64 data, else a file (relative to the kubeconfig).
func pemOf(data, file, dir string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(data)
	}
	if file == "" {
		return nil, nil
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	return os.ReadFile(file)
}

// NewClient reads a kubeconfig file (its current context).
func NewClient(path string) (*Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %v (give --kubeconfig or set KUBECONFIG)", path, err)
	}
	return parseKubeconfig(path, b)
}

// parseKubeconfig reads a kubeconfig's current context; relative files
// are relative to path's directory.
func parseKubeconfig(path string, b []byte) (*Client, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %v", path, err)
	}
	ctxCluster, ctxUser := "", ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			ctxCluster, ctxUser = c.Context.Cluster, c.Context.User
		}
	}
	if ctxCluster == "" {
		return nil, fmt.Errorf("kubeconfig %s: current-context %q names no context", path, kc.CurrentContext)
	}
	dir := filepath.Dir(path)
	tlsc := &tls.Config{}
	c := &Client{}
	for _, cl := range kc.Clusters {
		if cl.Name != ctxCluster {
			continue
		}
		c.Server = strings.TrimSuffix(cl.Cluster.Server, "/")
		tlsc.InsecureSkipVerify = cl.Cluster.Insecure
		ca, err := pemOf(cl.Cluster.CAData, cl.Cluster.CA, dir)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: cluster %s: certificate authority: %v", path, cl.Name, err)
		}
		if ca != nil {
			tlsc.RootCAs = x509.NewCertPool()
			tlsc.RootCAs.AppendCertsFromPEM(ca)
		}
	}
	if c.Server == "" {
		return nil, fmt.Errorf("kubeconfig %s: cluster %q has no server", path, ctxCluster)
	}
	for _, u := range kc.Users {
		if u.Name != ctxUser {
			continue
		}
		c.token = u.User.Token
		cert, err := pemOf(u.User.CertData, u.User.Cert, dir)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: user %s: client certificate: %v", path, u.Name, err)
		}
		key, err := pemOf(u.User.KeyData, u.User.Key, dir)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: user %s: client key: %v", path, u.Name, err)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: user %s: %v", path, u.Name, err)
			}
			tlsc.Certificates = []tls.Certificate{pair}
		}
	}
	c.http = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsc}, Timeout: 60 * time.Second}
	return c, nil
}

// saDir is where Kubernetes mounts a pod's service account.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterClient is the client of a pod: its service account, and the
// API at $CLOONIX_KUBE_API (set by deploy: the address the deploying
// client used, which works without a service proxy on the node), else
// the kubernetes service.
func InClusterClient() (*Client, error) {
	tok, err := os.ReadFile(filepath.Join(saDir, "token"))
	if err != nil {
		return nil, fmt.Errorf("not in a pod with a service account: %v", err)
	}
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	server := os.Getenv("CLOONIX_KUBE_API")
	if server == "" {
		server = "https://" + os.Getenv("KUBERNETES_SERVICE_HOST") + ":" + os.Getenv("KUBERNETES_SERVICE_PORT")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &Client{Server: server, token: strings.TrimSpace(string(tok)),
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 60 * time.Second}}, nil
}

// StatusError is an API error reply.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("kubernetes API: %d: %s", e.Code, e.Message) }

// IsNotFound says whether err is the API's 404.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// IsConflict says whether err is the API's 409 (exists, or a stale update).
func IsConflict(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusConflict
}

// Do sends body (JSON-encoded unless nil or []byte) and decodes the reply
// into out (when not nil).
func (c *Client) Do(method, path, ctype string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.Server+path, rd)
	if err != nil {
		return err
	}
	if ctype == "" {
		ctype = "application/json"
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubernetes API %s: %v", c.Server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var st struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &st) != nil || st.Message == "" {
			st.Message = strings.TrimSpace(string(data))
		}
		return &StatusError{Code: resp.StatusCode, Message: method + " " + path + ": " + st.Message}
	}
	if raw, ok := out.(*[]byte); ok { // text replies (pod logs)
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Get reads one object.
func (c *Client) Get(path string, out any) error { return c.Do("GET", path, "", nil, out) }

// Create posts obj to a collection; an existing object is left as it is.
func (c *Client) Create(collection string, obj any) error {
	err := c.Do("POST", collection, "", obj, nil)
	if IsConflict(err) {
		return nil
	}
	return err
}

// Delete removes one object; a missing one is not an error. Dependents go
// in the background (the garbage collector).
func (c *Client) Delete(path string) error {
	err := c.Do("DELETE", path, "", map[string]any{"propagationPolicy": "Background"}, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// ForceDelete removes one object at once (grace period 0): for pods whose
// kubelet is gone and can never confirm a graceful delete.
func (c *Client) ForceDelete(path string) error {
	err := c.Do("DELETE", path, "", map[string]any{"gracePeriodSeconds": 0, "propagationPolicy": "Background"}, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// MergePatch applies a JSON merge patch.
func (c *Client) MergePatch(path string, patch any) error {
	return c.Do("PATCH", path, "application/merge-patch+json", patch, nil)
}

// Selector is a labelSelector query string.
func Selector(labels map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(labels) {
		parts = append(parts, k+"="+labels[k])
	}
	return "?labelSelector=" + url.QueryEscape(strings.Join(parts, ","))
}

// NewClientFor talks to server with hc as it is (no credentials added):
// for `kubectl proxy` (http://127.0.0.1:8001) and for tests.
func NewClientFor(server string, hc *http.Client) *Client {
	return &Client{Server: strings.TrimSuffix(server, "/"), http: hc}
}
