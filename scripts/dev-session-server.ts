// A stand-in for Mojang's session server, for trying the minecraft credential
// out locally (README "Logging in with an external system"): `hasJoined` lets
// every well-formed player in, with the UUID an offline-mode server would
// give it. Never point a real deployment at this.
//   npm run dev:session-server   (TESSERA_DEV_SESSION_ADDR, default 127.0.0.1:8081)
import { createHash } from "node:crypto";
import { createServer } from "node:http";

const [host, port] = (process.env.TESSERA_DEV_SESSION_ADDR ?? "127.0.0.1:8081").split(":");

/** Minecraft's offline-mode UUID: version 3 (MD5) of "OfflinePlayer:<name>". */
function offlineUuid(name: string): string {
  const b = createHash("md5").update(`OfflinePlayer:${name}`).digest();
  b[6] = (b[6]! & 0x0f) | 0x30;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b.toString("hex");
}

createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const username = url.searchParams.get("username") ?? "";
  if (url.pathname === "/session/minecraft/hasJoined" && /^[A-Za-z0-9_]{1,16}$/.test(username) && url.searchParams.get("serverId")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: offlineUuid(username), name: username, properties: [] }));
    return;
  }
  res.writeHead(204);
  res.end();
}).listen(Number(port), host, () => console.log(`dev session server on http://${host}:${port}/session/minecraft`));
