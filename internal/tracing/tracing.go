// Package tracing exports OpenTelemetry traces over OTLP/HTTP when, and only when,
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.
//
// Spans carry operation names, kinds, HTTP methods, URL paths and status codes, never
// headers, tokens, GraphQL variables or URL queries (Terra's URLs carry user ids in them).
package tracing

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of terragate's own spans.
const instrumentation = "github.com/terragate/terragate/internal/tracing"

// Environment variables Setup reads through its getenv.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"        // base URL; /v1/traces is appended
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" // full URL, used as it is
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"                  // "true": no tracing whatever is set
)

// Setup installs tracing as configured by getenv and returns the function that flushes
// and stops it, and whether tracing is on: callers add their span helpers only then, so
// the untraced paths stay exactly as fast as before.
//
// Without an endpoint (or with OTEL_SDK_DISABLED=true) it installs nothing: the global
// tracer provider stays OpenTelemetry's no-op one, every span helper here costs next to
// nothing, and shutdown does nothing.
//
// With one, it sends spans in batches over OTLP/HTTP (protobuf) to that endpoint, marked
// with service.name and service.version, and makes the result the global tracer provider,
// with the W3C trace-context propagator. The endpoint is taken from getenv; the
// exporter's other settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, TLS
// certificates) it reads from the process environment itself.
func Setup(ctx context.Context, getenv func(string) string, serviceName, version string) (shutdown func(context.Context) error, on bool, err error) {
	noop := func(context.Context) error { return nil }
	endpoint, err := tracesEndpoint(getenv)
	if err != nil || endpoint == "" {
		return noop, false, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return noop, false, errors.Join(errors.New("tracing: OTLP exporter"), err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(serviceName),
		semconv.ServiceVersion(version),
	))
	if err != nil {
		_ = exp.Shutdown(ctx)
		return noop, false, errors.Join(errors.New("tracing: resource"), err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Shutdown, true, nil
}

// tracesEndpoint is the URL spans are posted to ("" when tracing is off): the traces
// variable as it is, else the base endpoint with /v1/traces appended, as the OTLP
// specification has it.
func tracesEndpoint(getenv func(string) string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") {
		return "", nil
	}
	if e := strings.TrimSpace(getenv(EnvTracesEndpoint)); e != "" {
		if err := checkEndpoint(EnvTracesEndpoint, e); err != nil {
			return "", err
		}
		return e, nil
	}
	e := strings.TrimSpace(getenv(EnvEndpoint))
	if e == "" {
		return "", nil
	}
	if err := checkEndpoint(EnvEndpoint, e); err != nil {
		return "", err
	}
	return strings.TrimRight(e, "/") + "/v1/traces", nil
}

// checkEndpoint refuses endpoints the exporter could not use. The error names the
// variable, never its value, which may carry credentials.
func checkEndpoint(name, e string) error {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("tracing: " + name + " must be an http:// or https:// URL")
	}
	return nil
}

// tracer is terragate's tracer from the global provider, whichever is installed.
func tracer() trace.Tracer { return otel.Tracer(instrumentation) }

// Span starts an internal span, such as a store operation, and returns the context
// inside it and the function that ends it.
func Span(ctx context.Context, name string) (context.Context, func()) {
	ctx, span := tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func() { span.End() }
}
