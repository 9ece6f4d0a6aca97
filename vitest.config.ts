import { defineConfig } from "vitest/config";

// Integration tests start real servers with real databases; two workers match the two cores.
// "tessera-source" resolves @tessera/client (the workspace in clients/typescript) to its TypeScript sources.
export default defineConfig({
  resolve: { conditions: ["tessera-source"] },
  ssr: { resolve: { conditions: ["tessera-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
