// An OCI distribution client and the readers of an image's layers (its package database).
export {
  type Credential,
  type CredentialLookup,
  credentialsFrom,
  credentialsFromDockerConfigDir,
  dockerConfigDirCredentials,
  dockerConfigJSON,
  dockerConfigText,
  normaliseHost,
  parseDockerConfig,
} from "./auth.ts";
export {
  type Descriptor,
  type Index,
  isIndex,
  type Manifest,
  MediaType,
  plainHTTP,
  RegistryClient,
  type RegistryClientOptions,
  type Resolved,
  unreachable,
} from "./client.ts";
export {
  type BlobReader,
  DEFAULT_LAYER_LIMITS,
  type LayerLimits,
  type PackageDB,
  type PackageFormat,
  parseApkInstalled,
  parseDpkgStatus,
  readLibraries,
  readPackageDB,
} from "./pkgdb.ts";
export {
  isLibraryFile,
  type LibraryLocation,
  libraryVersion,
  matchesLocation,
  normalizePythonName,
} from "./library-files.ts";
export {
  DEFAULT_MAX_ENTRIES,
  DEFAULT_MAX_FILE_BYTES,
  LimitError,
  readTar,
  type TarEntry,
  type TarLimits,
} from "./tar.ts";
