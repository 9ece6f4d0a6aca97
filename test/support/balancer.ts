// A round-robin TCP load balancer for tests: each accepted connection is
// forwarded to the next of its targets, which the test can replace at any time
// (a rolling restart repoints it at a new replica). Like a plain L4 balancer it
// has no health checks: a connection routed to a target that refuses is
// closed, and the client sees the connection drop (gRPC: UNAVAILABLE). An HTTP/2
// client keeps its connection, so it stays on one target until that target
// closes it (a draining Tessera sends GOAWAY, then closes).
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

export interface Target {
  host: string;
  port: number;
}

const key = (t: Target) => `${t.host}:${t.port}`;

export class TcpBalancer {
  #server?: Server;
  readonly #sockets = new Set<Socket>();
  #targets: Target[];
  #next = 0;
  /** Connections forwarded (upstream connected) per target, "host:port". */
  readonly connected = new Map<string, number>();
  /** Connections refused by their target (closed at once on the client side). */
  refused = 0;
  port = 0;

  constructor(targets: Target[]) {
    this.#targets = [...targets];
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Routes new connections to `targets` from now on; connections already made stay where they are. */
  setTargets(targets: Target[]): void {
    this.#targets = [...targets];
  }

  /** How many connections `target` has been given so far. */
  connectionsTo(target: Target): number {
    return this.connected.get(key(target)) ?? 0;
  }

  async start(): Promise<this> {
    this.#server = createServer((client) => {
      const targets = this.#targets;
      const target = targets[this.#next++ % Math.max(1, targets.length)];
      this.#track(client);
      if (!target) {
        client.destroy();
        return;
      }
      const upstream = connect({ host: target.host, port: target.port });
      this.#track(upstream);
      let connected = false;
      upstream.once("connect", () => {
        connected = true;
        this.connected.set(key(target), this.connectionsTo(target) + 1);
      });
      // A reset on one side resets the other; an orderly end travels through the pipes (so a
      // draining server's last answers and its GOAWAY reach the client before the close).
      upstream.once("error", () => {
        if (!connected) this.refused++;
        client.destroy();
      });
      client.once("error", () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
    this.#server.listen(this.port, "127.0.0.1");
    await once(this.#server, "listening");
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.on("close", () => this.#sockets.delete(s));
    s.on("error", () => s.destroy());
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
