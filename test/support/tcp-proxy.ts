// A TCP forwarder for tests: the server sees connections coming from
// `localAddress` (any 127.x.y.z works on Linux loopback, so tests can play
// callers at different addresses), and the test can cut every connection.
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

export class TcpProxy {
  #server?: Server;
  readonly #sockets = new Set<Socket>();
  port = 0;
  readonly #target: { host: string; port: number; localAddress?: string };

  constructor(target: { host: string; port: number; localAddress?: string }) {
    this.#target = target;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.#server = createServer((client) => {
      const upstream = connect({ host: this.#target.host, port: this.#target.port, localAddress: this.#target.localAddress });
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    this.#server.listen(this.port, "127.0.0.1");
    await once(this.#server, "listening");
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  /** Drops every connection and stops listening (start() again listens on the same port). */
  async cut(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server!.close(() => resolve()));
  }
}
