# velero-download-server: the gateway (dist/main.js) and the velero-download client (dist/cli/main.js)
# on Node 24 LTS, the line the tests run on (package.json "engines").
#
#   docker build -t velero-download-server:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v vds-state:/var/lib/velero-download-server \
#     -p 8443:8443 velero-download-server:0.1.0                       # local mode, demo data
#   docker run --rm --entrypoint velero-download velero-download-server:0.1.0 --help      # the client
#
# Base images are pinned by digest (name:tag@sha256:...): the build gets exactly the image reviewed,
# whatever the tag points to later. Each digest is the multi-arch index digest, so every platform
# resolves. The command above each FROM prints the digest the registry serves for the tag now: run it
# and replace the digest (in every stage that names the image) to take Node security releases and
# Debian updates. No registry was reachable where these were last written; each digest was taken
# from two independent, bot-maintained Dockerfiles that agree on it, named beside it.

# ---- build: compile TypeScript with the dev dependencies ------------------------------------------
# refresh: docker buildx imagetools inspect node:24-slim --format '{{json .Manifest.Digest}}'
# pinned 2026-12-05 to the digest Renovate wrote for node:24-slim in CodesWhat/careerrat (Dockerfile
# at c7ad90aa) and davralin/actual-firi-sync (Containerfile at 03396b55), from late August 2026.
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS build
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
# refresh: docker buildx imagetools inspect node:24-slim --format '{{json .Manifest.Digest}}'
# pinned as the build stage (same image, same digest).
FROM node:24-slim@sha256:a9f5f7c91a432850b2a8a7797adf5eadb6c733ceed61167806cee7ea7fbc29df AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# The one writable directory (state, and local mode's data), owned by the runtime user: the runtime
# image has no shell to create it.
RUN mkdir -p /rootfs/var/lib/velero-download-server \
 && chown -R 65532:65532 /rootfs/var/lib/velero-download-server \
 && chmod 0700 /rootfs/var/lib/velero-download-server
# The client as a command on PATH (docker run --entrypoint velero-download ...): the runtime image has
# neither a shell nor /usr/bin/env for dist/cli/main.js's own "#!/usr/bin/env node", so this launcher
# names the runtime's node itself and loads the client by its absolute path.
RUN mkdir -p /rootfs/usr/local/bin \
 && printf '#!/nodejs/bin/node\nimport("/app/dist/cli/main.js");\n' > /rootfs/usr/local/bin/velero-download \
 && chmod 0755 /rootfs/usr/local/bin/velero-download
# The source commit, for velero_download_server_build_info: the gateway reads a REVISION file beside
# package.json (an image has no .git). Written here because the runtime has no shell, and last, so a
# new commit rebuilds only this layer. Anything but a full commit id fails the build rather than
# leaving build_info at "unknown" while the label says otherwise; the default, unknown, stays unknown.
ARG REVISION=unknown
RUN if [ "$REVISION" != unknown ]; then \
      case ${#REVISION} in 40|64) ;; *) echo "REVISION must be a full commit id (git rev-parse HEAD), got ${#REVISION} characters" >&2; exit 1 ;; esac; \
      case "$REVISION" in *[!0-9a-f]*) echo 'REVISION must be a full commit id (git rev-parse HEAD): lowercase hex only' >&2; exit 1 ;; esac; \
    fi \
 && printf '%s\n' "$REVISION" > REVISION

# ---- runtime: distroless Node 24, no shell, no package manager ---------------------------------------
# refresh: docker buildx imagetools inspect gcr.io/distroless/nodejs24-debian12:nonroot --format '{{json .Manifest.Digest}}'
# pinned 2026-12-05 to the index digest no42-org/twiki (Dockerfile, Dependabot-maintained, since
# 2026-06-20) and uinaf/gatewai-console (Dockerfile at 09b82204) both use for this tag.
FROM gcr.io/distroless/nodejs24-debian12:nonroot@sha256:14d42e2511532589a7c7e01a753667a74fcc96266e137e8125006b87b0c32d0a
# OCI annotations; a release build passes the real ones:
#   docker build --build-arg VERSION=$(node -p 'require("./package.json").version') \
#     --build-arg REVISION=$(git rev-parse HEAD) -t velero-download-server:0.1.0 .
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/velero-download-server/velero-download-server
LABEL org.opencontainers.image.title="velero-download-server" \
      org.opencontainers.image.description="HTTPS gateway that streams Velero backup artifacts to callers Kubernetes has authorized, and the velero-download client" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production \
    PATH=/usr/local/bin:/nodejs/bin:/usr/bin:/bin \
    VDS_STATE_DIR=/var/lib/velero-download-server \
    VDS_DATA_DIR=/var/lib/velero-download-server/data
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/REVISION ./REVISION
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY demo ./demo
COPY --from=deps --chown=65532:65532 /rootfs/var/lib/velero-download-server /var/lib/velero-download-server
COPY --from=deps /rootfs/usr/local/bin/velero-download /usr/local/bin/velero-download
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 8443: download API (HTTPS). 8085: /healthz, /readyz, /metrics (HTTPS).
EXPOSE 8443 8085
# For plain `docker run` (Kubernetes ignores this and uses the chart's probes): exec form, no shell.
# dist/healthcheck.js fetches https://127.0.0.1:8085/healthz trusting only local mode's own
# certificate ($VDS_STATE_DIR/tls.crt) and exits 0 or 1; `docker inspect --format
# '{{.State.Health.Status}}' <container>` shows the result.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/nodejs/bin/node", "dist/healthcheck.js"]
# Exec form: node is PID 1 and receives SIGTERM itself; the gateway stops accepting, lets running
# downloads finish (--shutdown-grace) and exits. It starts no child processes, so nothing needs reaping.
# --max-semi-space-size=4: V8's young generation capped at 4 MiB, as `npm start` runs it (why:
# src/node-flags.ts; the same flags in all three places, tested).
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "dist/main.js"]
