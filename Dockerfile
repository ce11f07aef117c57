# Production image of the gateway: `docker build -t xingtu-link-gateway .`, then
# `docker run -p 4000:4000 --stop-timeout 30 -e JUSTONEAPI_TOKEN=... xingtu-link-gateway` (without a token it starts in
# demo mode; --stop-timeout: Docker's default 10 s would kill a drain that SHUTDOWN_TIMEOUT_MS allows 25 s; raise it by
# SHUTDOWN_DELAY_MS if that is set).

# Node 22 LTS in both stages; one argument so they are bumped together. Slim: Debian without compilers or docs.
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- build: all dependencies, TypeScript compiled to dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests alone first, so the dependency layer is reused until they change.
COPY package.json package-lock.json ./
# No install scripts: tsc needs none (esbuild's checks the binary of tsx and vitest, which the build does not run;
# @apollo/protobufjs's prints a hint), and a dependency's script gets no chance to run at build time.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and dist/ only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts stay off: the one production dependency that has one (@apollo/protobufjs, under the federated-tracing
# plugin) only makes an empty folder and prints a version hint. The npm cache is only needed for this step.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# Left owned by root: the unprivileged process below can read its code but not change it.
COPY --from=build /app/dist ./dist
# The node image's unprivileged user (uid 1000).
USER node
# The default PORT (src/env.ts); HOST defaults to 0.0.0.0, so the port is reachable from outside the container.
EXPOSE 4000
# The slim image has no curl or wget, so node's own fetch probes /health (the gateway's liveness route). It
# follows PORT when it is overridden, trimmed as src/env.ts reads it (` 8080 ` made an invalid URL: unhealthy for
# good); it asks 127.0.0.1, so HOST must stay 0.0.0.0 or a loopback address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+((process.env.PORT||'').trim()||4000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, node itself as PID 1, not via npm or a shell: `docker stop`'s SIGTERM reaches src/main.ts, which drains
# in-flight requests and exits on its own. As PID 1 a signal with no handler is dropped: src/main.ts catches them from its
# first line, before the gateway loads, so a stop during start-up is not ignored (no init process is needed).
CMD ["node", "dist/main.js"]
