import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// For `npm run test:mutation:flows` (Stryker over the refresh and verify flows
// and the auth middleware): the integration tests that drive them through a
// real server in this process, plus the unit tests.
export default defineConfig({
  // @tessera/client from its sources, as in vitest.config.ts.
  resolve: { alias: [{ find: /^@tessera\/client$/, replacement: fileURLToPath(new URL("./clients/typescript/src/index.ts", import.meta.url)) }] },
  test: {
    include: [
      "test/unit/**/*.test.ts",
      "test/integration/token-flows.test.ts",
      "test/integration/token-refresh-sessions.test.ts",
      "test/integration/token-issue-verify.test.ts",
      "test/integration/self-service.test.ts",
    ],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
