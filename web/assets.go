// Package web holds the graph page's built assets, embedded in the
// cloonix binary. The sources are in src/; `make web` (npm ci && npm run
// build) rebuilds dist/, which is committed so a Go build needs no npm.
package web

import "embed"

// Assets holds index.html, login.html and dist/.
//
//go:embed index.html login.html dist/app.js dist/app.css
var Assets embed.FS
