import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Integration tests start real servers with real databases; two workers match the two cores.
// @tessera/client (the workspace in clients/typescript) is tested from its TypeScript sources, never
// from a build that may be stale or missing: the alias does in Vite what the "tessera-source" export
// condition does for node (npm start, child processes, which get the condition in execArgv).
export default defineConfig({
  resolve: { alias: [{ find: /^@tessera\/client$/, replacement: fileURLToPath(new URL("./clients/typescript/src/index.ts", import.meta.url)) }] },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    execArgv: ["--conditions=tessera-source"],
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
