// Gate-Keeper (Region System forward auth for NGINX): what the rest of the code may use.
export { gatekeeperRoute, type GatekeeperOptions } from "./gatekeeper.http.ts";
