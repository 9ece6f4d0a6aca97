// OpenTelemetry: with tracing asked for (an OTEL_ variable) and the SDK
// started, a VerifyToken call is a server span that continues the caller's
// trace (traceparent), with Tessera's session load as its child (and, on
// PostgreSQL, the queries under that); log lines of the call carry the trace
// id. Spans hold no token.
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { Writable } from "node:stream";
import { Metadata } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logging.ts";
import { startTracing, tracingRequested, type Tracing } from "../../src/observability/tracing.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

const exporter = new InMemorySpanExporter();
const lines: string[] = [];
let tracing: Tracing;
let server: TestServer;

beforeAll(async () => {
  tracing = startTracing({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  server = await startTestServer(
    { OTEL_TRACES_EXPORTER: "otlp" },
    {
      logger: createLogger({
        level: "debug",
        destination: new Writable({
          write(chunk, _e, done) {
            lines.push(String(chunk));
            done();
          },
        }),
      }),
    },
  );
});
afterAll(async () => {
  await server?.close();
  await tracing?.shutdown();
});

describe("tracing", () => {
  it("is asked for by the standard variables only", () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: "none" })).toBe(false);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" })).toBe(false);
  });

  it("makes VerifyToken a server span in the caller's trace, with the session load as its child", async () => {
    const login = await server.login("system", "admin", ADMIN_PASSWORD);
    // A fresh replica-local cache: another server instance would be cleaner; a new session is enough (never loaded yet).
    exporter.reset();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    await server.clients.verify.verifyToken(
      { token: login.accessToken, audience: "" },
      { metadata: Metadata({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` }) },
    );
    const spans = exporter.getFinishedSpans();
    const rpc = spans.find((s) => s.name === "tessera.identity.v1.VerifyService/VerifyToken");
    expect(rpc, spans.map((s) => s.name).join(", ")).toBeDefined();
    expect(rpc!.spanContext().traceId).toBe(traceId);
    expect(rpc!.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    const load = spans.find((s) => s.name === "tessera.session.load");
    expect(load, spans.map((s) => s.name).join(", ")).toBeDefined();
    expect(load!.parentSpanContext?.spanId).toBe(rpc!.spanContext().spanId);
    if (process.env.TEST_DATABASE_URL) {
      const queries = spans.filter((s) => s.name.endsWith(" postgresql"));
      expect(queries.length).toBeGreaterThan(0);
      for (const q of queries) expect(q.spanContext().traceId).toBe(traceId);
    }
    // No token in any span, and the call's log line carries the trace id.
    expect(JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events })))).not.toContain(login.accessToken.slice(-20));
    expect(lines.some((l) => l.includes(`"traceId":"${traceId}"`) && l.includes("VerifyToken"))).toBe(true);
  });
});
