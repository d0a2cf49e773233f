# vuln-patcher (controller, worker and CLI), on Node 24.
# Build:  docker build -t vuln-patcher .   (or: buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=.)
# The stages `copa` and `build` download (Go modules, npm packages); a builder without
# network can supply them as named contexts (--build-context copa=DIR with out/copa and out/cosign,
# build=DIR with src/{package.json,node_modules,dist}): src/devenv/cluster-images.ts does.
FROM golang:1.26-bookworm AS copa
WORKDIR /build
COPY scripts/build-tools.sh ./
# copa for the local executor (`worker --executor local`); Jobs use the copa runner image.
# cosign signs what the workers publish (--signing-key), whatever the executor.
RUN VULN_PATCHER_CACHE=/cache ./build-tools.sh copa cosign && mkdir /out \
  && cp -L /cache/bin/copa /out/copa && cp -L /cache/bin/cosign /out/cosign

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would download a second Node; the image has one.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY charts/vuln-patcher/crds charts/vuln-patcher/crds
RUN node_modules/.bin/tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
# util-linux: setpriv, so a local copa dies with its worker.
RUN apt-get update && apt-get install -y --no-install-recommends util-linux ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=copa /out/copa /usr/local/bin/copa
COPY --from=copa /out/cosign /usr/local/bin/cosign
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY charts/vuln-patcher/crds charts/vuln-patcher/crds
ENV NODE_ENV=production
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
