package driver

// The JSON API on the HTTP port (/api/v1) serves the web UI and scripts. It
// is the DriverService again, not a second model: every route calls the
// gRPC method of the same name, checked against the same access table
// (methodRules), and answers the protojson form of the same messages. So the
// UI, the CLI and gRPC clients always see the same data and the same
// refusals.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/rpc"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// actionHeader must accompany every change (POST, DELETE). Browsers send a
// custom header only from pages of the same origin (anything else needs a
// CORS preflight, which this server never approves), so a page on another
// site cannot make a logged-in browser stop or delete jobs.
const actionHeader = "X-Sluice-Action"

// apiJSON is how messages are written: the proto field names in JSON's
// lowerCamelCase, with zero values, so clients need not know proto defaults.
var apiJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// httpAPI adapts DriverService to HTTP.
type httpAPI struct {
	d   *Driver
	api *api
}

func (h *httpAPI) register(mux *http.ServeMux) {
	svc := "/" + sluicev1.DriverService_ServiceDesc.ServiceName + "/"
	mux.HandleFunc("GET /api/v1/info", h.info)
	mux.Handle("GET /api/v1/jobs", h.call(svc+"ListJobs", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		req := &sluicev1.ListJobsRequest{PageToken: r.URL.Query().Get("pageToken")}
		if v := r.URL.Query().Get("pageSize"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("pageSize %q: not a number: %w", v, rpc.ErrInvalidArgument)
			}
			req.PageSize = int32(n)
		}
		return h.api.ListJobs(ctx, req)
	}))
	mux.Handle("GET /api/v1/jobs/{name}", h.call(svc+"GetJob", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		return h.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: r.PathValue("name")})
	}))
	mux.Handle("GET /api/v1/jobs/{name}/progress", h.call(svc+"GetRecentProgress", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		req := &sluicev1.GetRecentProgressRequest{Name: r.PathValue("name")}
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("limit %q: not a number: %w", v, rpc.ErrInvalidArgument)
			}
			req.Limit = int32(n)
		}
		return h.api.GetRecentProgress(ctx, req)
	}))
	mux.Handle("GET /api/v1/executors", h.call(svc+"ListExecutors", func(ctx context.Context, _ *http.Request) (proto.Message, error) {
		return h.api.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
	}))
	mux.Handle("POST /api/v1/jobs/{name}/stop", h.call(svc+"StopJob", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		return h.api.StopJob(ctx, &sluicev1.StopJobRequest{Name: r.PathValue("name")})
	}))
	mux.Handle("POST /api/v1/jobs/{name}/resume", h.call(svc+"ResumeJob", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		return h.api.ResumeJob(ctx, &sluicev1.ResumeJobRequest{Name: r.PathValue("name")})
	}))
	mux.Handle("DELETE /api/v1/jobs/{name}", h.call(svc+"DeleteJob", func(ctx context.Context, r *http.Request) (proto.Message, error) {
		return h.api.DeleteJob(ctx, &sluicev1.DeleteJobRequest{Name: r.PathValue("name")})
	}))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, status.Error(codes.NotFound, fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)))
	})
}

// call serves one route: authenticate, authorize as the gRPC method would
// be, run it, and answer JSON.
func (h *httpAPI) call(method string, run func(context.Context, *http.Request) (proto.Message, error)) http.Handler {
	rule, ok := methodRules[method]
	if !ok {
		// A route without an access rule would be open; refuse to start.
		panic("httpapi: no access rule for " + method)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Header.Get(actionHeader) == "" {
			writeError(w, status.Errorf(codes.PermissionDenied, "a change needs the %s header (sent by the UI and `curl -H '%s: 1'`)", actionHeader, actionHeader))
			return
		}
		ctx, err := h.authorize(r, method, rule)
		if err != nil {
			writeError(w, err)
			return
		}
		msg, err := run(ctx, r)
		if err != nil {
			writeError(w, err)
			return
		}
		if rule.audit {
			h.d.sec.audit(ctx, method, requestOf(r))
		}
		b, err := apiJSON.Marshal(msg)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
}

// requestOf names the job a change was for, for the audit line.
func requestOf(r *http.Request) any { return &sluicev1.GetJobRequest{Name: r.PathValue("name")} }

// authorize finds the caller and checks rule. Without authentication
// configured, the API is as open as the gRPC port: only on a loopback
// --http or with --insecure, else it refuses.
func (h *httpAPI) authorize(r *http.Request, method string, rule methodRule) (context.Context, error) {
	ctx := r.Context()
	s := h.d.sec
	if s.authn == nil {
		if !h.openWithoutAuth() {
			return nil, fmt.Errorf("the API on a non-loopback --http needs authentication (--auth-file, or --tls-client-ca for certificates) or --insecure: %w",
				rpc.ErrPermissionDenied)
		}
		return ctx, nil
	}
	p, err := s.authn.FromHTTP(r)
	if err != nil {
		return nil, err
	}
	if p.Executor {
		return nil, fmt.Errorf("certificate %q is an executor's; it may only use the executor stream: %w", p.Name, rpc.ErrPermissionDenied)
	}
	if p.Role < rule.role {
		s.log.Warn("refused a call", "method", method, "principal", p.Name, "role", p.Role, "via", "http")
		return nil, fmt.Errorf("%s has role %s; %s needs %s: %w", p.Name, p.Role, shortMethod(method), rule.role, rpc.ErrPermissionDenied)
	}
	return rpc.WithPrincipal(ctx, p), nil
}

func (h *httpAPI) openWithoutAuth() bool { return h.d.cfg.Insecure || rpc.IsLoopback(h.d.cfg.HTTP) }

// apiInfo is GET /api/v1/info: who the caller is and what the UI may offer.
type apiInfo struct {
	Leader          string        `json:"leader"`
	LeaderHTTP      string        `json:"leaderHttp,omitempty"`
	IsLeader        bool          `json:"isLeader"`
	AuthRequired    bool          `json:"authRequired"`
	Principal       *apiPrincipal `json:"principal,omitempty"`
	CheckpointStore string        `json:"checkpointStore"`
}

type apiPrincipal struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Via  string `json:"via"`
}

func (h *httpAPI) info(w http.ResponseWriter, r *http.Request) {
	lead, addr, _ := h.d.leading()
	info := apiInfo{Leader: addr, IsLeader: lead, AuthRequired: h.d.sec.authn != nil, CheckpointStore: h.d.storeKind()}
	if lead {
		info.LeaderHTTP = h.d.cfg.AdvertiseHTTP
	} else {
		_, info.LeaderHTTP = h.d.leaderAddrs()
	}
	if h.d.sec.authn != nil {
		p, err := h.d.sec.authn.FromHTTP(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if p.Executor {
			writeError(w, fmt.Errorf("certificate %q is an executor's: %w", p.Name, rpc.ErrPermissionDenied))
			return
		}
		info.Principal = &apiPrincipal{Name: p.Name, Role: p.Role.String(), Via: p.Via}
	} else if !h.openWithoutAuth() {
		writeError(w, fmt.Errorf("the API on a non-loopback --http needs authentication or --insecure: %w", rpc.ErrPermissionDenied))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(info)
}

// storeKind names the driver's checkpoint store without its address (which
// may name hosts or buckets users need not see).
func (d *Driver) storeKind() string {
	switch {
	case d.cfg.Store != "":
		if u, err := url.Parse(d.cfg.Store); err == nil && u.Scheme != "" {
			return u.Scheme
		}
		return "external"
	case len(d.cfg.Etcd) > 0:
		return "etcd"
	default:
		return "file"
	}
}

// apiError is the body of every refusal.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Leader and LeaderHTTP answer a call that reached a follower.
	Leader     string `json:"leader,omitempty"`
	LeaderHTTP string `json:"leaderHttp,omitempty"`
}

// writeError answers err with the HTTP status of its gRPC code (the mapping
// gRPC gateways use) and its code's name, so scripts can branch on it.
func writeError(w http.ResponseWriter, err error) {
	st, _ := status.FromError(rpc.ToStatus(err))
	body := apiError{Code: codeName(st.Code()), Message: st.Message()}
	var nl *rpc.NotLeaderError
	if errors.As(err, &nl) {
		body.Leader, body.LeaderHTTP = nl.Leader, nl.HTTP
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	}
	w.WriteHeader(httpStatus(st.Code()))
	_ = json.NewEncoder(w).Encode(body)
}

// codeName is the code as gRPC's status names spell it (NOT_FOUND).
func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "UNKNOWN"
}

var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// httpStatus is the HTTP status for a gRPC code (google.rpc.Code's mapping).
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
