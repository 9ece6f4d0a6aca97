// VerifyToken's response encoding as the server registers it
// (verifyServiceDefinition in src/tokens/token.grpc.ts): kept per response
// object, and byte for byte what the contract's encoder writes.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { VerifyTokenResponse } from "@tessera/client";
import { describe, expect, it } from "vitest";
import { verifyServiceDefinition } from "../../src/tokens/index.ts";

const { responseType } = verifyServiceDefinition.methods.verifyToken;
const response = (permissions: string[]): VerifyTokenResponse => VerifyTokenResponse.fromPartial({ principal: { subject: "u-1", tenantId: "t-1", permissions, expireTime: new Date(1_800_000_000_000) } });

describe("VerifyToken response encoding", () => {
  it("writes what the generated encoder writes, and decodes back to the same message", () => {
    const r = response(["game.stats.read"]);
    const bytes = responseType.encode(r).finish();
    expect(Buffer.from(bytes)).toEqual(Buffer.from(VerifyTokenResponse.encode(r).finish()));
    expect(VerifyTokenResponse.decode(bytes)).toEqual(r);
  });

  it("keeps the bytes of one response object, and encodes every other object for itself", () => {
    const a = response(["game.stats.read"]);
    const b = response(["game.profile.*"]);
    const first = responseType.encode(a).finish();
    expect(responseType.encode(a).finish()).toBe(first);
    expect(VerifyTokenResponse.decode(responseType.encode(b).finish()).principal?.permissions).toEqual(["game.profile.*"]);
    expect(VerifyTokenResponse.decode(responseType.encode(a).finish()).principal?.permissions).toEqual(["game.stats.read"]);
  });

  it("fills in absent fields as the generated fromPartial does (a principal built without upn or username)", () => {
    const partial = { principal: { subject: "svc-1", tenantId: "t-1", permissions: [], audience: ["tessera"], region: { id: "eu-1", capability: "billing" } } } as unknown as VerifyTokenResponse;
    const bytes = responseType.encode(partial).finish();
    expect(Buffer.from(bytes)).toEqual(Buffer.from(VerifyTokenResponse.encode(VerifyTokenResponse.fromPartial(partial)).finish()));
    expect(VerifyTokenResponse.decode(bytes).principal?.upn).toBe("");
  });

  it("writes into a writer it is given (an enclosing message) like the generated encoder", () => {
    const r = response(["a.b.c"]);
    expect(Buffer.from(responseType.encode(r, new BinaryWriter()).finish())).toEqual(Buffer.from(VerifyTokenResponse.encode(r).finish()));
  });

  it("hands nice-grpc the handler's message itself: fromPartial makes no copy", () => {
    const r = response([]);
    expect(responseType.fromPartial(r)).toBe(r);
  });
});
