// A slow or stalled client cannot hold the server's streams or memory beyond
// the configured limits (issue 14). The client here is raw HTTP/2 over a TCP
// socket, frames written by hand: a well-behaved HTTP/2 library would never
// open more streams than the server allows, nor stall on purpose, and what is
// tested is the server's side. Against the real server with small limits:
//   - streams beyond TESSERA_GRPC_MAX_CONCURRENT_STREAMS are refused
//     (RST_STREAM REFUSED_STREAM, or the connection ends with GOAWAY), while
//     other clients are served;
//   - a request whose length prefix announces more than
//     TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE is answered RESOURCE_EXHAUSTED
//     at once, without the server waiting for (or buffering) the body;
//   - a connection whose streams stall mid-message is closed by the server
//     after TESSERA_GRPC_MAX_CONNECTION_AGE + _AGE_GRACE, and the server
//     keeps serving;
//   - a client that never reads its answers (a zero HTTP/2 window) costs the
//     server no more than the answers it could not send.
// The first needs frames written by hand (any HTTP/2 library keeps to the
// server's SETTINGS); the others use node:http2's client, which lets a test
// announce a message it never sends, stall, and keep its window shut.
import { connect as connectHttp2, type ClientHttp2Stream } from "node:http2";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, Status } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";

const MAX_STREAMS = 4;
const AGE_MS = 2500;
const GRACE_MS = 1000;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    TESSERA_GRPC_MAX_CONCURRENT_STREAMS: String(MAX_STREAMS),
    TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE: "64KiB",
    TESSERA_GRPC_MAX_CONNECTION_AGE: `${AGE_MS}ms`,
    TESSERA_GRPC_MAX_CONNECTION_AGE_GRACE: `${GRACE_MS}ms`,
  });
});
afterAll(() => server?.close());

// ------------------------------------------------------------------ a raw HTTP/2 client

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;
const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
const REFUSED_STREAM = 7;

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** A header block of literals without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
function headerBlock(headers: [string, string][]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of headers) {
    bytes.push(0x00, ...hpackInt(name.length, 7), ...Buffer.from(name), ...hpackInt(value.length, 7), ...Buffer.from(value));
  }
  return Buffer.from(bytes);
}

/** A gRPC request's HEADERS for `path`. */
function requestHeaders(stream: number, path: string, authority: string): Buffer {
  return frame(
    FRAME.HEADERS,
    FLAG.END_HEADERS,
    stream,
    headerBlock([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", authority],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]),
  );
}

/** A gRPC length prefix announcing `length` bytes, followed by `body` (maybe fewer). */
function grpcMessage(length: number, body: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(length, 1);
  return Buffer.concat([prefix, body]);
}

class RawHttp2 {
  readonly frames: Frame[] = [];
  closed = false;
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
    socket.on("error", () => undefined);
  }

  /** Connects, sends the preface and empty SETTINGS, and ACKs the server's. */
  static async open(address: string): Promise<RawHttp2> {
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const client = new RawHttp2(socket);
    client.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(FRAME.SETTINGS, 0, 0)]));
    await client.until((f) => f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK), 5000);
    client.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
    return client;
  }

  write(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS (0x3), if it sent one. */
  maxConcurrentStreams(): number | undefined {
    for (const f of this.frames) {
      if (f.type !== FRAME.SETTINGS || f.flags & FLAG.ACK) continue;
      for (let i = 0; i + 6 <= f.payload.length; i += 6) if (f.payload.readUInt16BE(i) === 0x3) return f.payload.readUInt32BE(i + 2);
    }
    return undefined;
  }

  /** Waits for a frame matching `match` (true), or for the connection to close or `timeoutMs` to pass (false). */
  async until(match: (f: Frame) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.frames.some(match)) return true;
      if (this.closed || Date.now() >= deadline) return false;
      await Promise.race([new Promise<void>((resolve) => this.#waiters.push(resolve)), sleep(Math.max(1, deadline - Date.now()))]);
    }
  }

  close(): void {
    this.#socket.destroy();
  }

  #read(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      const f = { type: this.#buffer[3]!, flags: this.#buffer[4]!, stream: this.#buffer.readUInt32BE(5) & 0x7fffffff, payload: this.#buffer.subarray(9, 9 + length) };
      this.#buffer = this.#buffer.subarray(9 + length);
      this.frames.push(f);
      // Answer pings, as any client does: only the server's own limits may end this connection.
      if (f.type === FRAME.PING && !(f.flags & FLAG.ACK)) this.write(frame(FRAME.PING, FLAG.ACK, 0, f.payload));
    }
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

const VERIFY = "/tessera.identity.v1.VerifyService/VerifyToken";
const HEALTH = "/grpc.health.v1.Health/Check";

/** The server answers a normal client. */
async function serves(): Promise<boolean> {
  const response = await createClient(HealthDefinition, server.channel).check({ service: "" }, { signal: AbortSignal.timeout(5000) });
  return response.status === 1; // SERVING
}

/** A gRPC request's headers for node:http2's client. */
const GRPC_HEADERS = (path: string) => ({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });

/** The call's grpc-status (from its trailers, or from a trailers-only response's headers). */
function grpcStatus(call: ClientHttp2Stream): Promise<string | undefined> {
  return new Promise((resolve) => {
    call.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) resolve(String(headers["grpc-status"]));
    });
    call.on("trailers", (trailers) => resolve(trailers["grpc-status"] === undefined ? undefined : String(trailers["grpc-status"])));
    call.on("close", () => resolve(undefined));
  });
}

// ------------------------------------------------------------------ the tests

describe("a client that breaks the limits, on raw HTTP/2", () => {
  it(`may open at most ${MAX_STREAMS} streams at once: the next is refused, and other clients are served`, async () => {
    const client = await RawHttp2.open(server.address);
    try {
      expect(client.maxConcurrentStreams()).toBe(MAX_STREAMS);
      // MAX_STREAMS calls that stall mid-message: 10 of the 100 bytes their prefix announces.
      for (let i = 0; i < MAX_STREAMS; i++) {
        const stream = 1 + 2 * i;
        client.write(requestHeaders(stream, VERIFY, server.address));
        client.write(frame(FRAME.DATA, 0, stream, grpcMessage(100, Buffer.alloc(10, 0x0a))));
      }
      // One more, against the server's SETTINGS: refused (RST_STREAM REFUSED_STREAM or GOAWAY).
      const extra = 1 + 2 * MAX_STREAMS;
      client.write(requestHeaders(extra, VERIFY, server.address));
      const refused = await client.until((f) => (f.type === FRAME.RST_STREAM && f.stream === extra && f.payload.readUInt32BE(0) === REFUSED_STREAM) || f.type === FRAME.GOAWAY, 5000);
      expect(refused).toBe(true);
      // None of the stalled calls was answered: they wait for the rest of their message.
      expect(client.frames.filter((f) => f.type === FRAME.HEADERS && f.stream < extra)).toEqual([]);
      expect(await serves()).toBe(true);
    } finally {
      client.close();
    }
  });

  it("announcing a message over the receive limit is answered RESOURCE_EXHAUSTED at once, without the body", async () => {
    const session = connectHttp2(`http://${server.address}`);
    try {
      const call = session.request(GRPC_HEADERS(VERIFY), { endStream: false });
      // 10 MiB announced, 16 bytes sent: the server must not wait for (or keep) the rest.
      call.write(grpcMessage(10 * 1024 * 1024, Buffer.alloc(16, 0x0a)));
      expect(await grpcStatus(call)).toBe(String(Status.RESOURCE_EXHAUSTED));
    } finally {
      session.destroy();
    }
  });

  it(`stalled mid-message, is disconnected after the connection age (${AGE_MS} ms) and its grace (${GRACE_MS} ms); the server serves on`, async () => {
    const session = connectHttp2(`http://${server.address}`);
    session.on("error", () => undefined);
    const started = Date.now();
    const goaway = new Promise<number>((resolve) => session.once("goaway", () => resolve(Date.now() - started)));
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now() - started)));
    try {
      for (let i = 0; i < MAX_STREAMS; i++) {
        const call = session.request(GRPC_HEADERS(VERIFY), { endStream: false });
        call.on("error", () => undefined);
        call.write(grpcMessage(100, Buffer.alloc(10, 0x0a)));
      }
      // GOAWAY at the age, then the connection closed once the grace is over (with margin for a busy machine).
      const limit = AGE_MS * 1.2 + GRACE_MS + 10_000;
      const timeout = sleep(limit).then(() => -1);
      const [away, gone] = [await Promise.race([goaway, timeout]), await Promise.race([closed, timeout])];
      expect(away).toBeGreaterThanOrEqual(AGE_MS * 0.7); // the age limit, not something else at once
      expect(gone).toBeGreaterThanOrEqual(away);
      expect(await serves()).toBe(true);
    } finally {
      session.destroy();
    }
  });

  it("never reading its answers (window 0), holds no more than the answers the server could not send", async () => {
    const session = connectHttp2(`http://${server.address}`, { settings: { initialWindowSize: 0 } });
    session.on("error", () => undefined);
    try {
      // MAX_STREAMS complete health checks: answered by the server, but a zero window lets no DATA through.
      const calls = Array.from({ length: MAX_STREAMS }, () => {
        const call = session.request(GRPC_HEADERS(HEALTH), { endStream: false });
        call.on("error", () => undefined);
        call.end(grpcMessage(0, Buffer.alloc(0)));
        const chunks: Buffer[] = [];
        call.on("data", (chunk: Buffer) => chunks.push(chunk));
        return { call, chunks, status: grpcStatus(call) };
      });
      await sleep(500);
      expect(calls.flatMap((c) => c.chunks)).toEqual([]);
      // The streams stay taken (the server cannot finish them), and other clients are served.
      expect(await serves()).toBe(true);
      // Opening the window lets the answers through: kept, not lost, and nothing more.
      session.settings({ initialWindowSize: 65535 });
      for (const c of calls) expect(await c.status).toBe("0");
      for (const c of calls) expect(Buffer.concat(c.chunks).length).toBeLessThan(64); // a health answer: a few bytes
    } finally {
      session.destroy();
    }
  });
});
