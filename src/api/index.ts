export * from "./patchjob.ts";
export * from "./report.ts";
export * from "./version.ts";
export * from "./os.ts";
export * from "./convert.ts";
export * from "./decide.ts";
export * from "./naming.ts";
export * from "./imageref.ts";
