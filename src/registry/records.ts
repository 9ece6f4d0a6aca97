// The registry's published records (DESIGN "Region System records") live in
// the client package, shared with callers that read registries themselves.
export {
  CAPABILITY_RECORD_TYP,
  capabilityDnsName,
  capabilityKey,
  capabilityRecord,
  dnsRecords,
  MAX_RECORD_LENGTH,
  peekRecord,
  RecordError,
  REGION_RECORD_TYP,
  regionDnsName,
  regionRecord,
  signRecord,
  splitTxt,
  verifyRecord,
  zoneFile,
  type CapabilityRecord,
  type RegionRecord,
  type RegistryDocument,
  type TxtRecord,
} from "@tessera/client";
