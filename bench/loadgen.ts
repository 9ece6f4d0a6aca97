// A small closed-loop load generator for what h2load cannot drive: a chain of
// rotating refresh tokens (each session sends its next request with the token
// from its previous response) and a list of distinct request bodies (each sent
// once). It runs in its own process (runLoad forks this file), speaks gRPC
// over HTTP/2 framed by hand on node:net sockets (node:http2's client cost
// ~4× the CPU per call and took up to half a core from the server at 5k
// calls/s; the 5-byte gRPC framing and the protobuf of the few fields it needs
// are hand-encoded too) and HTTP/1.1 over node:net keep-alive sockets (one
// request in flight per connection, as `h2load --h1`), and reports its own
// CPU time next to the server's so that a reader can see it did not hide the
// server. Calibrated against h2load on requests h2load can drive (see
// bench/peer.ts and bench/verify-distinct.ts).
import { fork } from "node:child_process";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { cpuBetween, postgresSnapshot, processTree, snapshot, type CpuSnapshot } from "./proc.ts";

export interface LoadSpec {
  protocol: "grpc" | "http1";
  /**
   * gRPC client: hand-framed HTTP/2 over node:net (default), or node:http2, which costs the
   * generator ~4× more CPU but decodes grpc-status and grpc-message (for diagnosing failures;
   * also BENCH_GRPC_CLIENT=node:http2).
   */
  grpcClient?: "raw" | "node:http2";
  port: number;
  /** gRPC method path, or the HTTP path. */
  path: string;
  /** gRPC: HTTP/2 connections the in-flight streams are spread over (h2load -c). HTTP/1.1: always one per session. */
  connections?: number;
  /** HTTP/1.1 request headers besides Host and Content-Length (content-type, authorization). */
  headers?: Record<string, string>;
  /**
   * chain: `tokens` are the first refresh token of each session (one session per
   *   in-flight request); every response's refresh token is the session's next request.
   * list: `payloads` are sent once each (at most `inFlight` at a time) until exhausted or out of time.
   * fixed: `payloads[0]` is sent over and over.
   * cycle: `payloads` are sent round-robin, over and over.
   */
  mode: "chain" | "list" | "fixed" | "cycle";
  tokens?: string[];
  /**
   * gRPC: the protobuf request message, base64, or with `payloadEncoding` "field1" a string
   * that is the message's field 1 (e.g. VerifyTokenRequest.token). HTTP/1.1: the body text.
   */
  payloads?: string[];
  payloadEncoding?: "base64" | "field1";
  inFlight: number;
  warmupSeconds: number;
  /** Length of the measured window; in list mode it also ends when the list is exhausted. */
  seconds: number;
  /** Collect the access token of every response (field 1 of a gRPC response; "access_token" in JSON). */
  collectAccessTokens?: boolean;
  /** Processes whose CPU time over the measured window is reported next to the generator's. */
  serverPid?: number;
  /** Also report the CPU time of every `postgres` process over the window. */
  watchPostgres?: boolean;
}

export interface LoadResult {
  /** Successful responses completed inside the measured window. */
  requests: number;
  /** Failed responses (any time): a non-OK status, a missing token, a transport error. */
  failures: number;
  errors: string[];
  /** Actual length of the measured window. */
  seconds: number;
  rps: number;
  /** The generator's own CPU seconds over the window (process.cpuUsage). */
  generatorCpuSeconds: number;
  serverCpuSeconds: number;
  postgresCpuSeconds: number;
  /** chain: each session's last refresh token (null when the session failed). */
  finalTokens?: (string | null)[];
  accessTokens?: string[];
  /** list: the list ran out before the time did. */
  exhausted: boolean;
  /** Successful responses in total (warm-up and drain included). */
  total: number;
}

// ---------------------------------------------------------------- protobuf, gRPC

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** A gRPC frame holding a message whose field 1 is the string `value` (RefreshRequest, VerifyTokenRequest). */
export function grpcStringField1(value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  const len = varint(bytes.length);
  const message = 1 + len.length + bytes.length;
  const frame = Buffer.allocUnsafe(5 + message);
  frame[0] = 0;
  frame.writeUInt32BE(message, 1);
  frame[5] = 0x0a; // field 1, length-delimited
  Buffer.from(len).copy(frame, 6);
  bytes.copy(frame, 6 + len.length);
  return frame;
}

export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message.buffer, message.byteOffset, message.length).copy(frame, 5);
  return frame;
}

/** The length-delimited fields `wanted` of the first gRPC message in `data`, as strings. */
export function grpcStringFields(data: Buffer, wanted: readonly number[]): Map<number, string> {
  const found = new Map<number, string>();
  if (data.length < 5) return found;
  const end = Math.min(data.length, 5 + data.readUInt32BE(1));
  let i = 5;
  const read = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = data[i++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
      shift += 7;
    }
  };
  while (i < end) {
    const tag = read();
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        read();
        break;
      case 1:
        i += 8;
        break;
      case 5:
        i += 4;
        break;
      case 2: {
        const len = read();
        if (wanted.includes(field)) found.set(field, data.toString("utf8", i, i + len));
        i += len;
        break;
      }
      default:
        return found;
    }
  }
  return found;
}

/** One call with a real HTTP/2 client (node:http2), for the checks before and after a load: grpc-status, grpc-message, the response. */
export async function grpcCall(port: number, path: string, frame: Buffer): Promise<{ status: string; message: string; data: Buffer }> {
  const session = h2connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      let status = "";
      let message = "";
      const chunks: Buffer[] = [];
      const take = (h: Record<string, unknown>) => {
        if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
      };
      req.on("response", take);
      req.on("trailers", take);
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status, message, data: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(frame);
    });
  } finally {
    session.close();
  }
}

// ---------------------------------------------------------------- transports

type Reply = { ok: true; token?: string; access?: string } | { ok: false; error: string };
type Send = (lane: number, payload: Buffer | string) => Promise<Reply>;

function grpcTransport(spec: LoadSpec): { send: Send; close(): void } {
  const sessions: ClientHttp2Session[] = [];
  for (let i = 0; i < (spec.connections ?? 4); i++) {
    const session = h2connect(`http://127.0.0.1:${spec.port}`);
    session.on("error", () => undefined);
    sessions.push(session);
  }
  const headers = { ":method": "POST", ":path": spec.path, "content-type": "application/grpc", te: "trailers" };
  const wanted = spec.mode === "chain" ? (spec.collectAccessTokens ? [1, 4] : [4]) : spec.collectAccessTokens ? [1] : [];
  const send: Send = (lane, payload) =>
    new Promise((resolve) => {
      const req = sessions[lane % sessions.length]!.request(headers);
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message: string | undefined;
      req.on("response", (h) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = h["grpc-message"] as string | undefined;
        }
      });
      req.on("trailers", (t) => {
        status = String(t["grpc-status"]);
        message = t["grpc-message"] as string | undefined;
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", (e: Error) => resolve({ ok: false, error: e.message }));
      req.on("end", () => {
        if (status !== "0") return resolve({ ok: false, error: `grpc-status ${status}: ${decodeURIComponent(message ?? "")}` });
        if (!wanted.length) return resolve({ ok: true });
        const fields = grpcStringFields(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), wanted);
        resolve({ ok: true, token: fields.get(4), access: fields.get(1) });
      });
      req.end(payload);
    });
  return { send, close: () => sessions.forEach((s) => s.close()) };
}

// HPACK (RFC 7541) for the request: every header a literal that is never
// added to the dynamic table, so the block is the same bytes for every request.
function hpackInt(value: number, prefixBits: number, firstByte: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByte | value];
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return out;
}
function hpackString(value: string): number[] {
  const bytes = [...Buffer.from(value, "latin1")];
  return [...hpackInt(bytes.length, 7, 0), ...bytes];
}
function grpcHeaderBlock(path: string, authority: string): Buffer {
  return Buffer.from([
    0x83, // :method POST (static 3)
    0x86, // :scheme http (static 6)
    ...hpackInt(4, 4, 0), ...hpackString(path), // :path, literal without indexing, name static 4
    ...hpackInt(1, 4, 0), ...hpackString(authority), // :authority (static 1)
    ...hpackInt(31, 4, 0), ...hpackString("application/grpc"), // content-type (static 31)
    0x00, ...hpackString("te"), ...hpackString("trailers"),
  ]);
}

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b.writeUIntBE(length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  return b;
}

const H2 = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const ACK = 0x1;
const RECEIVE_WINDOW = 1 << 30;

/**
 * A minimal HTTP/2 client connection for unary gRPC over node:net: requests
 * are framed by hand (one constant HPACK block, one DATA frame) and written in
 * one batch per event-loop turn, as h2load does; responses are split into
 * frames and only DATA is kept. Response headers are never HPACK-decoded, so
 * grpc-status is not read: a call succeeds when it returns a message, which a
 * gRPC server sends only with status OK for these unary methods (an error is
 * a trailers-only response). The benchmarks check status with a real client
 * (node:http2) before and after each load. Flow control: a 1 GiB receive
 * window, re-opened as DATA arrives; the send windows are honoured.
 */
class RawH2Connection {
  readonly #socket: Socket;
  readonly #block: Buffer;
  #buffer: Buffer = Buffer.alloc(0);
  #nextStream = 1;
  readonly #streams = new Map<number, { chunks: Buffer[]; done: (data: Buffer | Error) => void }>();
  #out: Buffer[] = [];
  #flushScheduled = false;
  #received = 0;
  #sendWindow = 65535;
  #streamSendWindow = 65535;
  readonly #waiting: (() => void)[] = [];
  #dead: Error | undefined;

  constructor(port: number, path: string) {
    this.#block = grpcHeaderBlock(path, `127.0.0.1:${port}`);
    this.#socket = netConnect({ host: "127.0.0.1", port, noDelay: true });
    this.#socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on("error", (e) => this.#die(e));
    this.#socket.on("close", () => this.#die(new Error("connection closed")));
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0); // SETTINGS_INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(1 << 24, 2);
    const windowUpdate = Buffer.alloc(4);
    windowUpdate.writeUInt32BE(RECEIVE_WINDOW - 65535, 0);
    this.#write(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), frameHeader(6, H2.SETTINGS, 0, 0), settings, frameHeader(4, H2.WINDOW_UPDATE, 0, 0), windowUpdate);
  }

  #write(...buffers: Buffer[]) {
    this.#out.push(...buffers);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const out = this.#out;
      this.#out = [];
      if (!this.#dead) this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    });
  }

  #die(e: Error) {
    if (this.#dead) return;
    this.#dead = e;
    for (const s of this.#streams.values()) s.done(e);
    this.#streams.clear();
    for (const w of this.#waiting.splice(0)) w();
  }

  async request(payload: Buffer): Promise<Buffer | Error> {
    while (!this.#dead && (this.#sendWindow < payload.length || this.#streamSendWindow < payload.length)) {
      await new Promise<void>((r) => this.#waiting.push(r));
    }
    if (this.#dead) return this.#dead;
    this.#sendWindow -= payload.length;
    const stream = this.#nextStream;
    this.#nextStream += 2;
    return new Promise((resolve) => {
      this.#streams.set(stream, { chunks: [], done: resolve });
      this.#write(frameHeader(this.#block.length, H2.HEADERS, END_HEADERS, stream), this.#block, frameHeader(payload.length, H2.DATA, END_STREAM, stream), payload);
    });
  }

  #onData(chunk: Buffer) {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    let i = 0;
    const buf = this.#buffer;
    while (buf.length - i >= 9) {
      const length = buf.readUIntBE(i, 3);
      if (buf.length - i < 9 + length) break;
      const type = buf[i + 3]!;
      const flags = buf[i + 4]!;
      const streamId = buf.readUInt32BE(i + 5) & 0x7fffffff;
      const start = i + 9;
      const end = start + length;
      i = end;
      switch (type) {
        case H2.DATA: {
          this.#received += length;
          const s = this.#streams.get(streamId);
          if (s && length) {
            const pad = flags & PADDED ? buf[start]! : 0;
            s.chunks.push(buf.subarray(start + (flags & PADDED ? 1 : 0), end - pad));
          }
          if (flags & END_STREAM) this.#end(streamId);
          break;
        }
        case H2.HEADERS:
          if (flags & END_STREAM) this.#end(streamId);
          break;
        case H2.RST_STREAM: {
          const s = this.#streams.get(streamId);
          this.#streams.delete(streamId);
          s?.done(new Error(`RST_STREAM ${buf.readUInt32BE(start)}`));
          break;
        }
        case H2.SETTINGS:
          if (!(flags & ACK)) {
            for (let p = start; p + 6 <= end; p += 6) {
              if (buf.readUInt16BE(p) === 0x4) {
                const value = buf.readUInt32BE(p + 2);
                this.#streamSendWindow = value;
              }
            }
            this.#write(frameHeader(0, H2.SETTINGS, ACK, 0));
          }
          break;
        case H2.PING:
          if (!(flags & ACK)) this.#write(frameHeader(8, H2.PING, ACK, 0), Buffer.from(buf.subarray(start, end)));
          break;
        case H2.WINDOW_UPDATE:
          if (streamId === 0) {
            this.#sendWindow += buf.readUInt32BE(start) & 0x7fffffff;
            for (const w of this.#waiting.splice(0)) w();
          }
          break;
        case H2.GOAWAY:
          this.#die(new Error(`GOAWAY ${buf.readUInt32BE(start + 4)}`));
          break;
        default:
          break; // PRIORITY, CONTINUATION (headers are not decoded), unknown
      }
    }
    // Keep only the unparsed tail (copied: the rest of `buf` may be held by chunks until their stream ends).
    this.#buffer = i === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(i));
    if (this.#received >= RECEIVE_WINDOW / 2) {
      const w = Buffer.alloc(4);
      w.writeUInt32BE(this.#received, 0);
      this.#received = 0;
      this.#write(frameHeader(4, H2.WINDOW_UPDATE, 0, 0), w);
    }
  }

  #end(streamId: number) {
    const s = this.#streams.get(streamId);
    if (!s) return;
    this.#streams.delete(streamId);
    s.done(s.chunks.length === 1 ? s.chunks[0]! : Buffer.concat(s.chunks));
  }

  close() {
    this.#socket.removeAllListeners("close");
    this.#socket.end();
  }
}

function rawGrpcTransport(spec: LoadSpec): { send: Send; close(): void } {
  const connections = Array.from({ length: spec.connections ?? 4 }, () => new RawH2Connection(spec.port, spec.path));
  const wanted = spec.mode === "chain" ? (spec.collectAccessTokens ? [1, 4] : [4]) : spec.collectAccessTokens ? [1] : [];
  const send: Send = async (lane, payload) => {
    const data = await connections[lane % connections.length]!.request(payload as Buffer);
    if (data instanceof Error) return { ok: false, error: data.message };
    if (data.length < 5) return { ok: false, error: "no response message (a non-OK grpc-status)" };
    if (!wanted.length) return { ok: true };
    const fields = grpcStringFields(data, wanted);
    return { ok: true, token: fields.get(4), access: fields.get(1) };
  };
  return { send, close: () => connections.forEach((c) => c.close()) };
}

/** One keep-alive HTTP/1.1 connection, one request at a time (Content-Length or chunked responses). */
class H1Connection {
  #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #pending: ((r: { status: number; body: string } | Error) => void) | undefined;
  readonly #port: number;

  constructor(port: number) {
    this.#port = port;
    this.#socket = this.#open();
  }

  #open(): Socket {
    // onread: reads land in one buffer per connection instead of a new Buffer per read.
    const socket = netConnect({
      host: "127.0.0.1",
      port: this.#port,
      noDelay: true,
      onread: {
        buffer: Buffer.allocUnsafe(64 * 1024),
        callback: (n: number, buf: Uint8Array) => {
          const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
          this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
          this.#parse();
          // An incomplete response is kept: copy it out of the read buffer, which the next read overwrites.
          if (this.#buffer.length) this.#buffer = Buffer.from(this.#buffer);
          return true;
        },
      },
    });
    socket.on("error", (e) => this.#fail(e));
    socket.on("close", () => this.#fail(new Error("connection closed")));
    return socket;
  }

  #fail(e: Error) {
    const pending = this.#pending;
    this.#pending = undefined;
    this.#buffer = Buffer.alloc(0);
    pending?.(e);
  }

  #parse() {
    const headerEnd = this.#buffer.indexOf("\r\n\r\n");
    if (headerEnd < 0) return;
    const head = this.#buffer.toString("latin1", 0, headerEnd);
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let body: string;
    let consumed: number;
    if (length) {
      consumed = headerEnd + 4 + Number(length[1]);
      if (this.#buffer.length < consumed) return;
      body = this.#buffer.toString("utf8", headerEnd + 4, consumed);
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const parts: string[] = [];
      let i = headerEnd + 4;
      for (;;) {
        const lineEnd = this.#buffer.indexOf("\r\n", i);
        if (lineEnd < 0) return;
        const size = parseInt(this.#buffer.toString("latin1", i, lineEnd), 16);
        if (this.#buffer.length < lineEnd + 2 + size + 2) return;
        if (size === 0) {
          consumed = lineEnd + 4;
          break;
        }
        parts.push(this.#buffer.toString("utf8", lineEnd + 2, lineEnd + 2 + size));
        i = lineEnd + 2 + size + 2;
      }
      body = parts.join("");
    } else {
      consumed = headerEnd + 4;
      body = "";
    }
    this.#buffer = this.#buffer.subarray(consumed);
    const pending = this.#pending;
    this.#pending = undefined;
    if (/\r\nconnection:\s*close/i.test(head)) {
      this.#socket.removeAllListeners("close");
      this.#socket.destroy();
      this.#socket = this.#open();
    }
    pending?.({ status, body });
  }

  request(bytes: Buffer): Promise<{ status: number; body: string } | Error> {
    return new Promise((resolve) => {
      this.#pending = resolve;
      this.#socket.write(bytes);
    });
  }

  close() {
    this.#socket.removeAllListeners("close");
    this.#socket.end();
  }
}

function jsonString(body: string, key: string): string | undefined {
  const marker = `"${key}":"`;
  const start = body.indexOf(marker);
  if (start < 0) return undefined;
  return body.slice(start + marker.length, body.indexOf('"', start + marker.length));
}

function http1Transport(spec: LoadSpec): { send: Send; close(): void } {
  const connections = Array.from({ length: spec.inFlight }, () => new H1Connection(spec.port));
  const head =
    `POST ${spec.path} HTTP/1.1\r\nHost: 127.0.0.1:${spec.port}\r\n` +
    Object.entries(spec.headers ?? {})
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
  const cache = new Map<string, Buffer>(); // fixed mode: the one request, encoded once
  const encode = (body: string) => Buffer.from(`${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, "utf8");
  const send: Send = async (lane, payload) => {
    const body = String(payload);
    const reused = spec.mode === "fixed" || spec.mode === "cycle";
    let bytes = reused ? cache.get(body) : undefined;
    if (!bytes) {
      bytes = encode(body);
      if (reused) cache.set(body, bytes);
    }
    const r = await connections[lane]!.request(bytes);
    if (r instanceof Error) return { ok: false, error: r.message };
    if (r.status !== 200) return { ok: false, error: `HTTP ${r.status}: ${r.body.slice(0, 200)}` };
    if (spec.mode === "chain") {
      const token = jsonString(r.body, "refresh_token");
      return { ok: true, token, access: spec.collectAccessTokens ? jsonString(r.body, "access_token") : undefined };
    }
    if (spec.collectAccessTokens) return { ok: true, access: jsonString(r.body, "access_token") };
    if (spec.path.endsWith("introspection") && !r.body.includes('"active":true')) return { ok: false, error: `inactive: ${r.body.slice(0, 200)}` };
    return { ok: true };
  };
  return { send, close: () => connections.forEach((c) => c.close()) };
}

// ---------------------------------------------------------------- the run

async function generate(spec: LoadSpec): Promise<LoadResult> {
  const grpcClient = spec.grpcClient ?? (process.env.BENCH_GRPC_CLIENT as LoadSpec["grpcClient"]) ?? "raw";
  const transport = spec.protocol === "http1" ? http1Transport(spec) : grpcClient === "node:http2" ? grpcTransport(spec) : rawGrpcTransport(spec);
  const chainBody =
    spec.protocol === "grpc"
      ? (token: string) => grpcStringField1(token)
      : (token: string) => `grant_type=refresh_token&refresh_token=${encodeURIComponent(token)}`;
  const payloads = (spec.payloads ?? []).map((p) =>
    spec.protocol === "http1" ? p : spec.payloadEncoding === "field1" ? grpcStringField1(p) : grpcFrame(Buffer.from(p, "base64")),
  );
  const lanes = spec.mode === "chain" ? spec.tokens!.length : spec.inFlight;
  const finalTokens: (string | null)[] = spec.mode === "chain" ? [...spec.tokens!] : [];
  const accessTokens: string[] = [];
  const errors: string[] = [];
  let failures = 0;
  let total = 0;
  let next = 0; // list mode: next payload
  let measuring = false;
  let stopping = false;
  let inWindow = 0;
  let lastCompletion = 0;

  const lane = async (i: number) => {
    for (;;) {
      if (stopping) return;
      let payload: Buffer | string;
      if (spec.mode === "chain") payload = chainBody(finalTokens[i]!);
      else if (spec.mode === "fixed") payload = payloads[0]!;
      else if (spec.mode === "cycle") payload = payloads[next++ % payloads.length]!;
      else {
        if (next >= payloads.length) return;
        payload = payloads[next++]!;
      }
      const reply = await transport.send(i, payload);
      if (!reply.ok || (spec.mode === "chain" && !reply.token)) {
        failures++;
        if (errors.length < 5) errors.push(reply.ok ? "response without a refresh token" : reply.error);
        if (spec.mode === "chain") {
          finalTokens[i] = null; // the session is lost: an honest client would be logged out
          return;
        }
        continue;
      }
      total++;
      if (measuring) {
        inWindow++;
        lastCompletion = performance.now();
      }
      if (spec.mode === "chain") finalTokens[i] = reply.token!;
      if (reply.access) accessTokens.push(reply.access);
    }
  };

  const running = Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
  const exhausted = () => spec.mode === "list" && next >= payloads.length;
  const wait = async (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until && !exhausted() && !stopping) await new Promise((r) => setTimeout(r, Math.min(50, until - performance.now())));
  };
  await wait(spec.warmupSeconds * 1000);
  const watched = (): { server: CpuSnapshot; pg: CpuSnapshot } => ({
    server: snapshot(spec.serverPid ? processTree(spec.serverPid) : []),
    pg: spec.watchPostgres ? postgresSnapshot() : new Map(),
  });
  const before = watched();
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  measuring = true;
  await wait(spec.seconds * 1000);
  const ranOut = exhausted();
  if (ranOut) await Promise.race([running, new Promise((r) => setTimeout(r, 30_000))]);
  measuring = false;
  const end = ranOut ? lastCompletion || performance.now() : performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  const after = watched();
  stopping = true;
  await Promise.race([running, new Promise((r) => setTimeout(r, 30_000))]);
  transport.close();
  const seconds = (end - start) / 1000;
  return {
    requests: inWindow,
    failures,
    errors,
    seconds,
    rps: inWindow / seconds,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
    serverCpuSeconds: cpuBetween(before.server, after.server),
    postgresCpuSeconds: cpuBetween(before.pg, after.pg),
    finalTokens: spec.mode === "chain" ? finalTokens : undefined,
    accessTokens: spec.collectAccessTokens ? accessTokens : undefined,
    exhausted: ranOut,
    total,
  };
}

/** Runs one load in a fresh generator process and returns its figures. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const child = fork(new URL(import.meta.url).pathname, ["--child"], {
    execArgv: [],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const message = await new Promise<LoadResult | { error: string }>((resolve, reject) => {
    child.once("message", (m) => resolve(m as LoadResult | { error: string }));
    child.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
    child.send(spec);
  });
  child.disconnect();
  if ("error" in message) throw new Error(`load generator: ${message.error}`);
  return message;
}

if (process.argv[2] === "--child") {
  process.once("message", (spec: LoadSpec) => {
    generate(spec).then(
      (result) => process.send!(result, () => process.exit(0)),
      (error: Error) => process.send!({ error: error.stack ?? String(error) }, () => process.exit(1)),
    );
  });
}

/** "generator x.xx CPU-s/s, server y.yy CPU-s/s" for a report line. */
export function cpuLine(r: LoadResult): string {
  const per = (s: number) => (s / r.seconds).toFixed(2);
  const pg = r.postgresCpuSeconds ? `, postgres ${per(r.postgresCpuSeconds)}` : "";
  return `CPU (cores busy): generator ${per(r.generatorCpuSeconds)}, server ${per(r.serverCpuSeconds)}${pg}`;
}
