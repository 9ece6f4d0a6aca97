// `npm run generate` step: writes gen/descriptor-set.binpb, the schema that
// server reflection serves. It holds our buf module (proto/) and, so that
// `buf curl` needs no local schema for anything the port speaks, the standard
// protos of what else is served or sent: grpc.health.v1 and grpc.reflection
// (services on the port) and google.rpc status/error details (the types of
// the Any values in grpc-status-details-bin).
//
// The standard files are built apart from our module on purpose: they are
// not ours to lint or to guard with buf breaking, and buf.yaml must not name
// remote deps (the registry is out of reach). They come from pinned npm
// packages; each is staged under its canonical import path (grpc-health-check
// ships health.proto as health/v1/health.proto) so clients see the names
// every other gRPC server uses.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const root = fileURLToPath(new URL("..", import.meta.url));
const buf = join(root, "node_modules/.bin/buf");
const out = join(root, "gen/descriptor-set.binpb");

/** Canonical import path ← file shipped in node_modules. */
const STANDARD_PROTOS: Record<string, string> = {
  "google/rpc/status.proto": "google-proto-files/google/rpc/status.proto",
  "google/rpc/error_details.proto": "google-proto-files/google/rpc/error_details.proto",
  "grpc/health/v1/health.proto": "grpc-health-check/proto/health/v1/health.proto",
  "grpc/reflection/v1/reflection.proto": "@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto": "@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto",
};

function build(input: string): Uint8Array {
  return execFileSync(buf, ["build", input, "-o", "-#format=binpb"], { cwd: root, maxBuffer: 64 * 1024 * 1024 });
}

function buildStandard(): Uint8Array {
  const staging = mkdtempSync(join(tmpdir(), "tessera-standard-protos-"));
  try {
    for (const [path, shipped] of Object.entries(STANDARD_PROTOS)) {
      mkdirSync(dirname(join(staging, path)), { recursive: true });
      copyFileSync(join(root, "node_modules", shipped), join(staging, path));
    }
    return build(staging);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

const ours = fromBinary(FileDescriptorSetSchema, build("proto"));
const standard = fromBinary(FileDescriptorSetSchema, buildStandard());

// Both builds include the well-known types they import (each set is
// self-contained); a file must appear once. Ours come first and every
// appended file's imports precede it, so the set stays in dependency order.
const names = new Set(ours.file.map((f) => f.name));
const merged = create(FileDescriptorSetSchema, {
  file: [...ours.file, ...standard.file.filter((f) => !names.has(f.name))],
});
writeFileSync(out, toBinary(FileDescriptorSetSchema, merged));
