# velero-download-server: the gateway (dist/main.js) and the velero-download client (dist/cli/main.js)
# on Node 24 LTS, the line the tests run on (package.json "engines").
#
#   docker build -t velero-download-server:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v vds-state:/var/lib/velero-download-server \
#     -p 8443:8443 velero-download-server:0.1.0                       # local mode, demo data
#   docker run --rm --entrypoint /nodejs/bin/node velero-download-server:0.1.0 dist/cli/main.js --help
#
# Pin the base images by digest (image@sha256:...) in a release pipeline.

# ---- build: compile TypeScript with the dev dependencies ------------------------------------------
FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script in the tree belongs to the dev dependency "node", which
# fetches a second Node 24 binary for npm scripts; this image already runs Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# Without its install script that package leaves node_modules/.bin/node without a binary: remove the
# link so `npm run build` finds this image's node.
RUN rm -f node_modules/.bin/node && npm run build

# ---- deps: production dependencies only -----------------------------------------------------------
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# The one writable directory (state, and local mode's data), owned by the runtime user: the runtime
# image has no shell to create it.
RUN mkdir -p /rootfs/var/lib/velero-download-server \
 && chown -R 65532:65532 /rootfs/var/lib/velero-download-server \
 && chmod 0700 /rootfs/var/lib/velero-download-server

# ---- runtime: distroless Node 24, no shell, no package manager ---------------------------------------
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production \
    VDS_STATE_DIR=/var/lib/velero-download-server \
    VDS_DATA_DIR=/var/lib/velero-download-server/data
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY demo ./demo
COPY --from=deps --chown=65532:65532 /rootfs/var/lib/velero-download-server /var/lib/velero-download-server
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 8443: download API (HTTPS). 8085: /healthz, /readyz, /metrics (HTTPS).
EXPOSE 8443 8085
# Exec form: node is PID 1 and receives SIGTERM itself; the gateway stops accepting, lets running
# downloads finish (--shutdown-grace) and exits. It starts no child processes, so nothing needs reaping.
ENTRYPOINT ["/nodejs/bin/node", "dist/main.js"]
