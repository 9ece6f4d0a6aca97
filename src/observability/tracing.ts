// OpenTelemetry tracing, opt-in by the standard OTEL_ environment variables:
// set OTEL_TRACES_EXPORTER (otlp, console, zipkin) or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and the
// OpenTelemetry Node SDK starts with everything else from OTEL_ variables too
// (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...);
// OTEL_SDK_DISABLED=true turns it off. Spans: one per RPC (nice-grpc-
// opentelemetry, the caller's traceparent continued), Tessera's own around
// database work (session loads), and one per PostgreSQL query
// (db/call-deadline.ts). Spans carry names and ids, never request fields,
// SQL parameters or tokens. Without tracing nothing is loaded: the SDK is
// imported only when it is asked for.
import { context, SpanStatusCode, trace, type Attributes, type Span } from "@opentelemetry/api";
import type { SpanProcessor } from "@opentelemetry/sdk-trace";
import { createRequire } from "node:module";

/** What the environment asks for: tracing on, and not disabled. */
export function tracingRequested(env: Record<string, string | undefined>): boolean {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? "")) return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (exporters.length) return !exporters.every((e) => e === "none");
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

export interface Tracing {
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry Node SDK and registers it globally (call before
 * the server starts). `spanProcessors` replace the exporters the environment
 * names (tests pass an in-memory exporter).
 */
export function startTracing(options: { spanProcessors?: SpanProcessor[] } = {}): Tracing {
  // Through require: nice-grpc-opentelemetry (CommonJS) took its tracer from @opentelemetry/api's
  // CommonJS build when it was loaded; the SDK must register with that same build, or the RPC
  // spans stay no-ops (the API's dual-package hazard). Spans made through the ESM build find the
  // registration through the API's process-wide globals.
  const { NodeSDK } = createRequire(import.meta.url)("@opentelemetry/sdk-node") as typeof import("@opentelemetry/sdk-node");
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME || "tessera",
    ...(options.spanProcessors ? { spanProcessors: options.spanProcessors } : {}),
    // Traces only: metrics are Prometheus' (/metrics), logs are pino's.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}

const tracer = () => trace.getTracer("tessera");

/**
 * Runs `fn` in a child span of the active one, when there is one (a traced
 * call); otherwise just runs it, at no cost.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  if (!trace.getActiveSpan()) return fn();
  return tracer().startActiveSpan(name, { attributes }, async (span: Span) => {
    try {
      return await fn();
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as { name?: string }).name ?? "error" });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** A span for an operation that is started now and ended by `end` (callbacks, promises seen from outside). */
export function startChildSpan(name: string, attributes: Attributes): { end(error?: unknown): void } | undefined {
  if (!trace.getActiveSpan()) return undefined;
  const span = tracer().startSpan(name, { attributes }, context.active());
  return {
    end(error?: unknown) {
      if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: (error as { code?: string }).code ?? "error" });
      span.end();
    },
  };
}

/** The active trace id, for log lines (undefined outside a traced call). */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
