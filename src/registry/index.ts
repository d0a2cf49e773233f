// An OCI distribution client and the readers of an image's layers (its package database).
export {
  type CredentialLookup,
  credentialsFrom,
  credentialsFromDockerConfigDir,
  dockerConfigJSON,
  parseDockerConfig,
} from "./auth.ts";
export { type Descriptor, type Index, isIndex, MediaType, RegistryClient } from "./client.ts";
export { type PackageDB, readPackageDB } from "./pkgdb.ts";
