// The API's OpenAPI 3.1 document, served at /openapi.json. api.test.ts checks that its
// paths are exactly the routes the server answers.
import { API_PATHS } from "./paths.ts";

const error = { $ref: "#/components/schemas/Error" };
const responses = (ok: Record<string, unknown>, okCode = "200") => ({
  [okCode]: ok,
  "401": {
    description: "No bearer token, or one the Kubernetes API server does not accept",
    content: { "application/json": { schema: error } },
  },
  "403": {
    description: "RBAC does not allow the caller this action (SubjectAccessReview)",
    content: { "application/json": { schema: error } },
  },
});
const jsonOf = (schema: unknown, description: string) => ({
  description,
  content: { "application/json": { schema } },
});
const ns = { name: "namespace", in: "path", required: true, schema: { type: "string" } };
const name = { name: "name", in: "path", required: true, schema: { type: "string" } };

const operations: Record<string, Record<string, unknown>> = {
  "GET /api/v1/namespaces/{namespace}/reports": {
    operationId: "listReports",
    summary: "VulnerabilityReports with their counts and PatchJob phase (RBAC: list vulnerabilityreports)",
    parameters: [ns],
    responses: responses(
      jsonOf(
        {
          type: "object",
          properties: { items: { type: "array", items: { $ref: "#/components/schemas/Report" } } },
        },
        "The reports",
      ),
    ),
  },
  "GET /api/v1/namespaces/{namespace}/patchjobs": {
    operationId: "listPatchJobs",
    summary: "PatchJobs (RBAC: list patchjobs)",
    parameters: [ns],
    responses: responses(
      jsonOf(
        {
          type: "object",
          properties: { items: { type: "array", items: { $ref: "#/components/schemas/PatchJob" } } },
        },
        "The PatchJobs",
      ),
    ),
  },
  "POST /api/v1/namespaces/{namespace}/patchjobs": {
    operationId: "createPatchJob",
    summary: "Patch an image or a report now (RBAC: create patchjobs); dryRun only plans",
    parameters: [ns],
    requestBody: {
      required: true,
      content: { "application/json": { schema: { $ref: "#/components/schemas/PatchRequest" } } },
    },
    responses: {
      ...responses(jsonOf({ $ref: "#/components/schemas/PatchJob" }, "The PatchJob created"), "201"),
      "400": jsonOf(error, "A malformed request (bad reference, neither image nor report)"),
      "404": jsonOf(error, "No such report"),
      "422": jsonOf(error, "The report cannot be patched, or the apiserver refused the PatchJob"),
    },
  },
  "GET /api/v1/namespaces/{namespace}/patchjobs/{name}": {
    operationId: "getPatchJob",
    summary: "One PatchJob (RBAC: get patchjobs)",
    parameters: [ns, name],
    responses: {
      ...responses(jsonOf({ $ref: "#/components/schemas/PatchJob" }, "The PatchJob")),
      "404": jsonOf(error, "Not found"),
    },
  },
  "POST /api/v1/namespaces/{namespace}/patchjobs/{name}/cancel": {
    operationId: "cancelPatchJob",
    summary:
      "Cancel a Pending or Queued PatchJob: it ends Failed, reason Cancelled (RBAC: update patchjobs/status)",
    parameters: [ns, name],
    responses: {
      ...responses(jsonOf({ $ref: "#/components/schemas/PatchJob" }, "The cancelled PatchJob")),
      "404": jsonOf(error, "Not found"),
      "409": jsonOf(error, "Already running or finished"),
    },
  },
  "GET /api/v1/namespaces/{namespace}/events": {
    operationId: "watchPatchJobs",
    summary:
      "Server-Sent Events: `event: patchjob` with {type: ADDED|MODIFIED|DELETED, object: PatchJob} (RBAC: watch patchjobs)",
    parameters: [ns],
    responses: responses({
      description: "An event stream",
      content: { "text/event-stream": { schema: { type: "string" } } },
    }),
  },
};

export function openAPIDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [method, path] of API_PATHS) {
    const op = operations[`${method} ${path}`];
    if (!op) throw new Error(`no OpenAPI operation for ${method} ${path}`);
    (paths[path] ??= {})[method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "vuln-patcher API",
      version: "v1",
      description:
        "Ad-hoc patching and PatchJob status. Authenticate with a Kubernetes bearer token; every call is authorized by a SubjectAccessReview against the resource it touches, so it grants exactly what RBAC grants.",
    },
    security: [{ kubernetesToken: [] }],
    paths,
    components: {
      securitySchemes: {
        kubernetesToken: {
          type: "http",
          scheme: "bearer",
          description: "A Kubernetes ServiceAccount or user token",
        },
      },
      schemas: {
        Error: { type: "object", required: ["error"], properties: { error: { type: "string" } } },
        PatchRequest: {
          type: "object",
          description: "Give image or report.",
          properties: {
            image: { type: "string", description: "An image reference, e.g. registry.example/app:1.2" },
            platform: { type: "string", description: "os/arch[/variant] or all (default linux/amd64)" },
            report: {
              type: "string",
              description: "A VulnerabilityReport in the namespace: patch what it lists",
            },
            dryRun: { type: "boolean", description: "Plan only: the PatchJob ends Planned" },
            packageTypes: {
              type: "array",
              items: { type: "string", enum: ["os", "library"] },
              description:
                "With report: what to patch, as a PatchPolicy's packageTypes (default [os]; library: its Python and Node.js packages)",
            },
            libraryPatchLevel: {
              type: "string",
              enum: ["patch", "minor", "major"],
              description: "With report: the highest version jump of a library update (default patch)",
            },
          },
        },
        Report: {
          type: "object",
          properties: {
            namespace: { type: "string" },
            name: { type: "string" },
            image: { type: "object" },
            vulnerabilities: {
              type: "object",
              properties: {
                total: { type: "integer" },
                fixable: { type: "integer" },
                bySeverity: { type: "object", additionalProperties: { type: "integer" } },
              },
            },
            patchable: { type: "boolean" },
            problem: { type: "string" },
            patchJob: { type: "object", properties: { name: { type: "string" }, phase: { type: "string" } } },
          },
        },
        PatchJob: {
          type: "object",
          description: "spec and status as in the PatchJob CRD (vulnpatcher.io/v1alpha1)",
          properties: {
            namespace: { type: "string" },
            name: { type: "string" },
            generation: { type: "integer" },
            createdAt: { type: "string" },
            spec: { type: "object" },
            status: { type: "object" },
          },
        },
      },
    },
  };
}
