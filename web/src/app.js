// The cloonix graph page: draws the running lab (cytoscape), lists it in a
// text panel, follows the switch's events through /api/live, sends edits
// to /api/call and opens consoles (xterm.js) over /api/console.
import cytoscape from 'cytoscape';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import './style.css';

const token = document.querySelector('meta[name="cloonix-token"]').content;
const $ = (id) => document.getElementById(id);

let lab = null; // the last lab from the switch
let switchUp = false;
let pageUp = false;
let firstDraw = true;
const serverPos = new Map(); // node id -> "x,y" last seen from the switch
const terminals = new Map(); // vm -> {term, ws, fit, tab, pane}

// ---- talking to the server ----------------------------------------------

// call sends one edit through the control protocol; the switch's error
// is shown to the user. Returns true on success.
async function call(verb, args, quiet) {
  let j;
  try {
    const r = await fetch('/api/call', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Cloonix-Token': token },
      body: JSON.stringify({ verb, args }),
    });
    try { j = await r.json(); } catch { j = { ok: false, error: `HTTP ${r.status}` }; }
  } catch (e) {
    j = { ok: false, error: `graph server unreachable (${e.message})` };
  }
  if (!j.ok && !quiet) showError(`${verb.replace('_', ' ')}: ${j.error}`);
  return j;
}

function showError(text) {
  const box = $('errors');
  const p = document.createElement('p');
  p.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'dismiss');
  close.onclick = () => p.remove();
  p.append(' ', close);
  box.append(p);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(() => p.remove(), 15000);
}

function setStatus() {
  const s = $('status');
  if (!pageUp) {
    s.textContent = 'graph server unreachable, retrying…';
    s.className = 'down';
  } else if (!switchUp) {
    s.textContent = `switch unreachable, retrying… (${statusError})`;
    s.className = 'down';
  } else {
    s.textContent = 'switch connected, live';
    s.className = 'up';
  }
  document.body.classList.toggle('offline', !(pageUp && switchUp));
}

let statusError = '';

function connectLive() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/api/live?token=${encodeURIComponent(token)}`);
  ws.onopen = () => { pageUp = true; setStatus(); };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === 'status') {
      switchUp = m.up;
      statusError = m.error || '';
      setStatus();
    } else if (m.type === 'lab') {
      lab = m.lab;
      render();
    } else if (m.type === 'event') {
      logEvent(m.event);
    }
  };
  ws.onclose = () => {
    pageUp = false;
    setStatus();
    setTimeout(connectLive, 1000);
  };
}

function logEvent(e) {
  const ol = $('events');
  const li = document.createElement('li');
  const attrs = Object.entries(e.attrs || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  li.textContent = `${new Date().toLocaleTimeString()} ${e.type} ${attrs}`;
  ol.prepend(li);
  while (ol.children.length > 50) ol.lastChild.remove();
}

// ---- the model: lab -> drawing elements -----------------------------------

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(1)} GB`;
}

function lanCounters(l) {
  const c = l.counters || {};
  return `${c.rx_frames || 0} in, ${c.tx_frames || 0} out, ${fmtBytes(c.rx_bytes || 0)}`;
}

// portNode maps a switch port name to the id of the node drawing it.
function portIndex(lab) {
  const m = new Map();
  for (const v of lab.vms) for (const e of v.eths) m.set(e.port, { id: `eth:${e.port}`, kind: 'eth', vm: v.name });
  for (const t of lab.tux) m.set(t.name, { id: `tux:${t.name}`, kind: 'tux' });
  for (const p of lab.ports) if (!m.has(p.name)) m.set(p.name, { id: `port:${p.name}`, kind: 'port' });
  return m;
}

function stateClass(s) {
  return `state-${(s || 'unknown').replace(/[^a-z]/g, '')}`;
}

// elementsOf returns the nodes and edges for lab, with wanted positions.
function elementsOf(lab) {
  const nodes = [];
  const edges = [];
  const ports = new Map(lab.ports.map((p) => [p.name, p]));
  for (const v of lab.vms) {
    nodes.push({ id: `vm:${v.name}`, kind: 'vm', name: v.name, label: `${v.name} (${v.state || '?'})`, classes: `vm ${stateClass(v.state)}`, x: v.x, y: v.y });
    v.eths.forEach((e, i) => {
      const p = ports.get(e.port);
      const label = e.port.slice(e.port.indexOf(':') + 1);
      const impaired = e.impair || (p && p.impair);
      nodes.push({ id: `eth:${e.port}`, kind: 'eth', port: e.port, vm: v.name, index: i, count: v.eths.length, label, parent: `vm:${v.name}`, classes: `eth${p && p.connected ? ' up' : ''}${impaired ? ' impaired' : ''}${p && p.link === 'down' ? ' linkdown' : ''}` });
    });
  }
  for (const l of lab.lans) {
    nodes.push({ id: `lan:${l.name}`, kind: 'lan', name: l.name, label: `${l.name}\n${(l.counters || {}).rx_frames || 0} in / ${(l.counters || {}).tx_frames || 0} out`, classes: 'lan', x: l.x, y: l.y });
  }
  for (const t of lab.tux) {
    nodes.push({ id: `tux:${t.name}`, kind: 'tux', name: t.name, port: t.name, label: `${t.name}\n${t.kind} ${t.state || ''}`.trim(), classes: `tux ${stateClass(t.state)}${t.impair ? ' impaired' : ''}${t.link === 'down' ? ' linkdown' : ''}`, x: t.x, y: t.y });
  }
  const idx = portIndex(lab);
  for (const p of lab.ports) {
    if (idx.get(p.name).kind === 'port') {
      nodes.push({ id: `port:${p.name}`, kind: 'port', name: p.name, port: p.name, label: `${p.name}\n${p.kind}`, classes: `port${p.connected ? ' up' : ''}${p.impair ? ' impaired' : ''}${p.link === 'down' ? ' linkdown' : ''}` });
    }
  }
  for (const l of lab.lans) {
    for (const p of l.ports) {
      const n = idx.get(p);
      if (!n) continue;
      edges.push({ id: `edge:${p}|${l.name}`, source: n.id, target: `lan:${l.name}`, port: p, lan: l.name });
    }
  }
  return { nodes, edges };
}

// ---- the drawing ---------------------------------------------------------

const cy = cytoscape({
  container: $('graph'),
  wheelSensitivity: 0.3,
  minZoom: 0.2,
  maxZoom: 3,
  style: [
    { selector: 'node', style: { label: 'data(label)', 'font-size': 11, 'text-wrap': 'wrap', 'line-height': 1.35, color: '#1f2937', 'font-family': 'system-ui, sans-serif' } },
    { selector: 'node.vm', style: { shape: 'round-rectangle', 'background-color': '#eef2f7', 'border-width': 2, 'border-color': '#64748b', 'text-valign': 'top', 'text-halign': 'center', 'font-weight': 'bold', 'font-size': 12, padding: 12, 'min-width': 70, 'min-height': 26, 'text-margin-y': -3 } },
    { selector: 'node.vm.state-running', style: { 'border-color': '#15803d', 'background-color': '#ecfdf3' } },
    { selector: 'node.vm.state-booting', style: { 'border-color': '#b45309', 'background-color': '#fffbeb', 'border-style': 'dashed' } },
    { selector: 'node.vm.state-stopped', style: { 'border-color': '#6b7280', 'background-color': '#f3f4f6' } },
    { selector: 'node.vm.state-crashed', style: { 'border-color': '#b91c1c', 'background-color': '#fef2f2', 'border-width': 3 } },
    { selector: 'node.eth', style: { shape: 'round-rectangle', width: 38, height: 20, 'background-color': '#ffffff', 'border-width': 2, 'border-color': '#94a3b8', 'font-size': 10, 'text-valign': 'center', 'text-halign': 'center' } },
    { selector: 'node.eth.up', style: { 'border-color': '#15803d', 'background-color': '#dcfce7' } },
    { selector: 'node.lan', style: { shape: 'ellipse', width: 26, height: 26, 'background-color': '#2563eb', 'text-valign': 'bottom', 'text-margin-y': 5, 'font-size': 11 } },
    { selector: 'node.tux', style: { shape: 'hexagon', width: 46, height: 40, 'background-color': '#f5f3ff', 'border-color': '#7c3aed', 'border-width': 2, 'text-valign': 'bottom', 'text-margin-y': 5 } },
    { selector: 'node.tux.state-running', style: { 'border-color': '#15803d', 'background-color': '#ecfdf3' } },
    { selector: 'node.tux.state-restarting, node.tux.state-starting', style: { 'border-color': '#b45309', 'border-style': 'dashed', 'background-color': '#fffbeb' } },
    { selector: 'node.tux.state-down, node.tux.state-stopped, node.tux.state-failed', style: { 'border-color': '#b91c1c', 'background-color': '#fef2f2' } },
    { selector: 'node.port', style: { shape: 'tag', width: 40, height: 24, 'background-color': '#f8fafc', 'border-color': '#94a3b8', 'border-width': 2, 'text-valign': 'bottom', 'text-margin-y': 5, 'font-size': 10 } },
    { selector: 'node.port.up', style: { 'border-color': '#15803d', 'background-color': '#dcfce7' } },
    { selector: 'node.lan, node.tux, node.port', style: { 'text-background-color': '#ffffff', 'text-background-opacity': 1, 'text-background-padding': 2, 'text-background-shape': 'roundrectangle' } },
    { selector: 'node.impaired', style: { 'border-color': '#ea580c', 'border-style': 'dashed', 'border-width': 3 } },
    { selector: 'node.linkdown', style: { 'border-color': '#dc2626', 'border-style': 'dotted', 'border-width': 3 } },
    { selector: 'edge', style: { width: 2, 'line-color': '#60a5fa', 'curve-style': 'bezier' } },
    { selector: 'node.drop-target', style: { 'background-color': '#f97316', 'border-width': 4, 'border-color': '#c2410c', width: 34, height: 34 } },
    { selector: '.faded', style: { opacity: 0.2 } },
    { selector: 'node:selected', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.15, 'overlay-padding': 4 } },
  ],
});

// placeEths lays a VM's eths in a row centred on (x, y).
function ethPos(x, y, i, n) {
  return { x: x + (i - (n - 1) / 2) * 46, y };
}

// occupied tells whether a node other than id is drawn near p.
function occupied(p, id) {
  // A new node is about 60x60 with its label; keep it off every drawn
  // box (VM boxes included) with a margin.
  return cy.nodes().some((o) => {
    if (o.id() === id || o.isChild()) return false;
    const b = o.boundingBox();
    return p.x + 40 > b.x1 && p.x - 40 < b.x2 && p.y + 45 > b.y1 && p.y - 35 < b.y2;
  });
}

// freeSpot is a free place in the visible part of the drawing, so a new
// node shows (and can be dragged) at once; beside everything otherwise.
function freeSpot(id) {
  if (cy.nodes().length <= 1) return { x: 0, y: 0 };
  const e = cy.extent();
  const step = 70;
  for (let y = e.y1 + 50; y < e.y2 - 40; y += step) {
    for (let x = e.x1 + 50; x < e.x2 - 40; x += step) {
      if (!occupied({ x, y }, id)) return { x, y };
    }
  }
  const bb = cy.nodes().boundingBox();
  return { x: bb.x2 + 90, y: (bb.y1 + bb.y2) / 2 };
}

// nearNeighbours finds a place for a new node by the nodes it links to.
function nearNeighbours(n, edges, unplaced) {
  const pts = [];
  for (const e of edges) {
    const other = e.source === n.id ? e.target : e.target === n.id ? e.source : null;
    if (!other || unplaced.has(other)) continue;
    const o = cy.getElementById(other);
    if (o.nonempty()) pts.push(o.position());
  }
  if (!pts.length) return null;
  const x = pts.reduce((a, p) => a + p.x, 0) / pts.length;
  const y = pts.reduce((a, p) => a + p.y, 0) / pts.length;
  // Below what it links to: VMs above their lans, tux below.
  const p = { x, y: y + 110 };
  // Step aside from nodes already there.
  for (let i = 0; i < 50 && occupied(p, n.id); i++) p.x += 60;
  return p;
}

// moveVM moves a VM (its eths) so its centre is at p.
function moveVM(node, p) {
  const kids = node.children();
  if (kids.empty()) {
    node.position(p);
    return;
  }
  const c = node.position();
  kids.shift({ x: p.x - c.x, y: p.y - c.y });
}

let dragging = null; // id of the node the user holds

function sync(lab) {
  const { nodes, edges } = elementsOf(lab);
  const want = new Set([...nodes.map((n) => n.id), ...edges.map((e) => e.id)]);
  const added = [];
  cy.batch(() => {
    cy.edges().forEach((e) => { if (!want.has(e.id())) e.remove(); });
    cy.nodes().forEach((n) => {
      if (n.inside() && !want.has(n.id())) {
        serverPos.delete(n.id());
        n.remove();
      }
    });
    for (const n of nodes) {
      let el = cy.getElementById(n.id);
      const { classes, x, y, ...data } = n;
      if (el.empty()) {
        el = cy.add({ group: 'nodes', data, classes });
        added.push(n);
      } else {
        el.data(data);
        // Keep the search's fading and a drag's highlight across updates.
        const keep = ['faded', 'drop-target'].filter((c) => el.hasClass(c));
        el.classes([classes, ...keep].join(' '));
      }
    }
    for (const e of edges) {
      if (cy.getElementById(e.id).empty()) cy.add({ group: 'edges', data: e });
    }
  });
  // Positions: those kept by the switch win; new nodes without one are
  // laid out (all at once on the first drawing, near their links later).
  const unplaced = [];
  let moved = false;
  for (const n of nodes) {
    if (n.kind === 'eth') continue;
    const el = cy.getElementById(n.id);
    const key = n.x != null && n.y != null ? `${n.x},${n.y}` : '';
    const isNew = added.includes(n);
    if (key && (isNew || key !== serverPos.get(n.id)) && dragging !== n.id) {
      if (n.kind === 'vm') {
        if (isNew) placeEths(el, { x: n.x, y: n.y });
        moveVM(el, { x: n.x, y: n.y });
      } else {
        el.position({ x: n.x, y: n.y });
      }
      autoPlaced.delete(n.id);
      moved = true;
    } else if (!key && isNew) {
      unplaced.push(n);
    }
    serverPos.set(n.id, key);
  }
  for (const id of autoPlaced) if (cy.getElementById(id).empty()) autoPlaced.delete(id);
  // Things this page placed beside their links follow when those move
  // (fconf load sets the VMs' kept positions just after adding them).
  if (moved && autoPlaced.size) scheduleRelayout();
  if (unplaced.length) {
    const anyPlaced = nodes.some((n) => n.x != null);
    if (firstDraw && !anyPlaced) {
      runLayout(true);
    } else {
      const waiting = new Set(unplaced.map((n) => n.id));
      for (const n of unplaced) {
        const el = cy.getElementById(n.id);
        const p = nearNeighbours(n, edges, waiting) || freeSpot(n.id);
        waiting.delete(n.id);
        if (n.kind === 'vm') placeEths(el, p);
        else el.position(p);
        pendingAuto.add(n.id);
        autoPlaced.add(n.id);
      }
      scheduleRelayout();
    }
  }
  // A new eth of a known VM (rare) goes beside its siblings.
  for (const n of added) {
    if (n.kind !== 'eth') continue;
    const vm = cy.getElementById(n.parent);
    if (added.some((a) => a.id === n.parent)) continue;
    const sib = vm.children().filter((c) => c.id() !== n.id);
    const p = sib.nonempty() ? { x: sib.boundingBox().x2 + 25, y: sib.position().y } : vm.position();
    cy.getElementById(n.id).position(p);
  }
  if (firstDraw && nodes.length) {
    fitAll();
    firstDraw = false;
  }
}

// Nodes placed by this page (not by the switch) since the last layout.
// A batch of them (fconf load into an open page) gets a real layout once
// it settles, as long as nothing in the lab has a kept position.
const pendingAuto = new Set();
// Every node placed by this page that nobody has placed since.
const autoPlaced = new Set();
let relayoutTimer = null;

// runLayout lays the lab out with cytoscape's cose on a simplified copy
// where each VM is one box (as wide as its row of eths) linked to its
// lans, so eths stay in a neat row inside their VM. fresh starts from a
// circle in lab order (the same lab gives the same drawing), otherwise
// from where things are.
function runLayout(fresh) {
  pendingAuto.clear();
  cy.nodes().forEach((n) => { if (!n.isChild() && !serverPos.get(n.id())) autoPlaced.add(n.id()); });
  const top = cy.nodes().filter((n) => !n.isChild());
  const els = [];
  top.forEach((n, i) => {
    const vm = n.data('kind') === 'vm';
    const a = (2 * Math.PI * i) / top.length;
    const r = 60 * top.length;
    els.push({
      group: 'nodes',
      data: { id: n.id(), w: vm ? Math.max(80, n.children().length * 46 + 30) : 60, h: vm ? 70 : 55 },
      position: fresh ? { x: r * Math.cos(a), y: r * Math.sin(a) } : { ...n.position() },
    });
  });
  const owner = (n) => (n.isChild() ? n.parent().id() : n.id());
  const seen = new Set();
  cy.edges().forEach((e) => {
    const a = owner(e.source());
    const b = owner(e.target());
    if (a !== b && !seen.has(`${a}|${b}`)) {
      seen.add(`${a}|${b}`);
      els.push({ group: 'edges', data: { id: `l${seen.size}`, source: a, target: b } });
    }
  });
  const h = cytoscape({ headless: true, styleEnabled: true, elements: els, style: [{ selector: 'node', style: { width: 'data(w)', height: 'data(h)' } }] });
  h.layout({ name: 'cose', animate: false, randomize: false, nodeRepulsion: () => 40000, idealEdgeLength: () => 110, nodeOverlap: 20, componentSpacing: 100, padding: 40 }).run();
  h.nodes().forEach((n) => {
    const el = cy.getElementById(n.id());
    if (el.data('kind') === 'vm') placeEths(el, n.position());
    else el.position(n.position());
  });
  h.destroy();
}

function scheduleRelayout() {
  clearTimeout(relayoutTimer);
  relayoutTimer = setTimeout(() => {
    if (dragging || !lab) return scheduleRelayout();
    const kept = [...serverPos.values()].some((v) => v);
    if (pendingAuto.size >= 2 && !kept) {
      runLayout(false);
      fitAll();
    } else {
      // Place again what this page placed, beside what it links to now.
      const { edges } = elementsOf(lab);
      // Lans first (they link to VMs), then what links to lans.
      const rank = (id) => ({ lan: 0, vm: 1 })[cy.getElementById(id).data('kind')] ?? 2;
      const waiting = new Set([...autoPlaced].filter((id) => !serverPos.get(id)).sort((a, b) => rank(a) - rank(b)));
      for (const id of [...waiting]) {
        const el = cy.getElementById(id);
        waiting.delete(id);
        if (el.empty()) continue;
        const n = { id, kind: el.data('kind') };
        el.position({ x: 1e6, y: 1e6 }); // out of the way while looking for a place
        const p = nearNeighbours(n, edges, waiting) || freeSpot(id);
        if (n.kind === 'vm') moveVM(el, p);
        else el.position(p);
      }
    }
    pendingAuto.clear();
    // Keep a lab that grew or moved by itself in view.
    const ext = cy.extent();
    const bb = cy.elements().boundingBox();
    if (bb.x1 < ext.x1 || bb.x2 > ext.x2 || bb.y1 < ext.y1 || bb.y2 > ext.y2) fitAll();
  }, 300);
}

function placeEths(vm, p) {
  const kids = vm.children();
  kids.forEach((k) => k.position(ethPos(p.x, p.y, k.data('index'), k.data('count'))));
  if (kids.empty()) vm.position(p);
}

// ---- dragging: move nodes, drop a port on a lan to attach ----------------

let grabbed = null; // {id, pos}

function lanUnder(pos) {
  let hit = null;
  cy.nodes('.lan').forEach((l) => {
    const bb = l.boundingBox({ includeLabels: false });
    if (pos.x >= bb.x1 - 8 && pos.x <= bb.x2 + 8 && pos.y >= bb.y1 - 8 && pos.y <= bb.y2 + 8) hit = l;
  });
  return hit;
}

const isPortish = (n) => ['eth', 'tux', 'port'].includes(n.data('kind'));

cy.on('grab', 'node', (e) => {
  const n = e.target;
  grabbed = { id: n.id(), pos: { ...n.position() } };
  dragging = n.isChild() ? n.parent().id() : n.id();
});

cy.on('drag', 'node', (e) => {
  const n = e.target;
  if (!isPortish(n)) return;
  cy.nodes('.lan').removeClass('drop-target');
  const l = lanUnder(n.position());
  if (l) l.addClass('drop-target');
});

cy.on('free', 'node', async (e) => {
  const n = e.target;
  const start = grabbed && grabbed.id === n.id() ? grabbed.pos : null;
  grabbed = null;
  dragging = null;
  cy.nodes('.lan').removeClass('drop-target');
  const kind = n.data('kind');
  if (isPortish(n)) {
    const l = lanUnder(n.position());
    if (l) {
      if (start) n.position(start);
      const port = n.data('port');
      const lan = l.data('name');
      const onIt = lab && lab.lans.some((x) => x.name === lan && x.ports.includes(port));
      if (!onIt) await call('attach', { port, lan });
      return;
    }
    if (kind === 'eth') {
      if (start) n.position(start); // eths stay in their VM
      return;
    }
  }
  if (kind === 'port' || !start) return; // raw ports: positions stay in this page
  const p = n.position();
  if (Math.abs(p.x - start.x) < 1 && Math.abs(p.y - start.y) < 1) return;
  await savePos(n);
});

// Dragging a VM box moves its eths; its own "free" comes with the grab.
async function savePos(n) {
  autoPlaced.delete(n.id());
  const kind = n.data('kind');
  if (!['vm', 'lan', 'tux'].includes(kind)) return;
  const p = n.position();
  const x = Math.round(p.x);
  const y = Math.round(p.y);
  serverPos.set(n.id(), `${x},${y}`);
  await call('set_pos', { kind, name: n.data('name'), x: String(x), y: String(y) });
}

// ---- menus ---------------------------------------------------------------

function hideMenu() {
  $('menu').hidden = true;
}

function showMenu(x, y, items) {
  const m = $('menu');
  m.replaceChildren();
  for (const [label, fn] of items) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'menuitem');
    b.textContent = label;
    b.onclick = () => { hideMenu(); fn(); };
    m.append(b);
  }
  m.hidden = false;
  m.style.left = `${Math.min(x, window.innerWidth - 240)}px`;
  m.style.top = `${Math.min(y, window.innerHeight - 30 * items.length - 10)}px`;
  m.querySelector('button')?.focus();
}

document.addEventListener('click', (e) => { if (!$('menu').contains(e.target)) hideMenu(); });
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') hideMenu();
  if (!$('menu').hidden && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
    const items = [...$('menu').querySelectorAll('button')];
    const i = items.indexOf(document.activeElement);
    const j = (i + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
    items[j].focus();
    e.preventDefault();
  }
});

function lansOf(port) {
  return lab ? lab.lans.filter((l) => l.ports.includes(port)).map((l) => l.name) : [];
}

function confirmDel(what) {
  return window.confirm(`Delete ${what}?`);
}

function menuFor(el) {
  const items = [];
  if (el.isEdge()) {
    const { port, lan } = el.data();
    items.push([`Detach ${port} from ${lan}`, () => call('detach', { port, lan })]);
    return items;
  }
  const d = el.data();
  if (d.kind === 'vm') {
    items.push([`Console of ${d.name}`, () => openConsole(d.name)]);
    const v = lab && lab.vms.find((x) => x.name === d.name);
    if (v && v.state === 'stopped') items.push([`Start VM ${d.name}`, () => call('start_vm', { name: d.name })]);
    else if (v && v.state !== 'crashed') items.push([`Stop VM ${d.name}`, () => call('stop_vm', { name: d.name })]);
    items.push([`Delete VM ${d.name}`, () => confirmDel(`VM ${d.name}`) && call('del_vm', { name: d.name })]);
  }
  if (d.kind === 'lan') {
    items.push([`Delete lan ${d.name}`, () => confirmDel(`lan ${d.name}`) && call('del_lan', { name: d.name })]);
  }
  if (d.port) {
    const p = lab && lab.ports.find((x) => x.name === d.port);
    if (p && p.link === 'down') items.push([`Link up ${d.port}`, () => call('link', { port: d.port, state: 'up' })]);
    else if (p) items.push([`Link down ${d.port}`, () => call('link', { port: d.port, state: 'down' })]);
    for (const l of lansOf(d.port)) items.push([`Detach ${d.port} from ${l}`, () => call('detach', { port: d.port, lan: l })]);
    for (const l of lab ? lab.lans : []) {
      if (!l.ports.includes(d.port)) items.push([`Attach ${d.port} to ${l.name}`, () => call('attach', { port: d.port, lan: l.name })]);
    }
  }
  if (d.kind === 'eth') items.push([`Console of ${d.vm}`, () => openConsole(d.vm)]);
  if (d.kind === 'tux') {
    items.push([`Delete tux ${d.name}`, () => confirmDel(`tux ${d.name}`) && call('del_tux', { name: d.name })]);
  }
  return items;
}

cy.on('cxttap', (e) => {
  const oe = e.originalEvent;
  if (e.target === cy) {
    showMenu(oe.clientX, oe.clientY, [['Add VM…', () => openDialog('dlg-vm')], ['Add lan…', () => openDialog('dlg-lan')], ['Add tux…', () => openDialog('dlg-tux')]]);
    return;
  }
  const items = menuFor(e.target);
  if (items.length) showMenu(oe.clientX, oe.clientY, items);
});
cy.on('tap', () => hideMenu());
cy.on('dbltap', 'node.vm, node.eth', (e) => openConsole(e.target.data('vm') || e.target.data('name')));

// ---- dialogs -------------------------------------------------------------

const dialogs = {
  'dlg-vm': (f) => {
    const a = { name: f.name.value.trim(), type: f.type.value, rootfs: f.rootfs.value.trim(), mem: f.mem.value, cpu: f.cpu.value, eth: f.eth.value };
    return ['add_vm', a];
  },
  'dlg-lan': (f) => ['add_lan', { name: f.name.value.trim() }],
  'dlg-tux': (f) => {
    // The options of the chosen kind that were filled in, by input name.
    const a = { name: f.name.value.trim(), kind: f.kind.value };
    for (const l of f.querySelectorAll('label[data-kind]')) {
      const i = l.querySelector('input');
      if (l.dataset.kind === f.kind.value && i.value.trim()) a[i.name] = i.value.trim();
    }
    return ['add_tux', a];
  },
};

function tuxKindFields(form) {
  for (const l of form.querySelectorAll('label[data-kind]')) l.hidden = l.dataset.kind !== form.kind.value;
}

function openDialog(id) {
  const d = $(id);
  const f = d.querySelector('form');
  f.querySelector('.dlg-error').textContent = '';
  if (id === 'dlg-tux') tuxKindFields(f);
  d.showModal();
  f.name.focus();
}

for (const id of Object.keys(dialogs)) {
  const d = $(id);
  const f = d.querySelector('form');
  if (id === 'dlg-tux') f.kind.addEventListener('change', () => tuxKindFields(f));
  f.addEventListener('submit', async (e) => {
    if (e.submitter && e.submitter.value === 'cancel') return;
    e.preventDefault();
    const [verb, args] = dialogs[id](f);
    const r = await call(verb, args, true);
    if (r.ok) {
      d.close();
      f.name.value = '';
    } else {
      f.querySelector('.dlg-error').textContent = r.error;
    }
  });
}

$('btn-add-vm').onclick = () => openDialog('dlg-vm');
$('btn-add-lan').onclick = () => openDialog('dlg-lan');
$('btn-add-tux').onclick = () => openDialog('dlg-tux');
$('btn-fit').onclick = fitAll;

// ---- the text panel ------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e[k] = v;
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

function button(id, text, label, fn) {
  return el('button', { type: 'button', id, 'aria-label': label, title: label, onclick: fn }, text);
}

// attachForm is the keyboard way to attach: a lan name (existing or new).
function attachForm(port, key) {
  const input = el('input', { list: 'lan-names', 'aria-label': `lan to attach ${port} to`, placeholder: 'lan', size: 8, id: `in-${key}` });
  const f = el('form', { class: 'attach' }, input, ' ', el('button', { type: 'submit', id: `b-attach-${key}` }, 'Attach'));
  f.onsubmit = async (e) => {
    e.preventDefault();
    const lan = input.value.trim();
    if (lan && (await call('attach', { port, lan })).ok) input.value = '';
  };
  return f;
}

function portLine(port, key) {
  const lans = lansOf(port);
  const li = el('li', {}, el('span', { class: 'port' }, port), ': ');
  if (!lans.length) li.append(el('span', { class: 'muted' }, 'on no lan'));
  lans.forEach((l, i) => {
    if (i) li.append(', ');
    li.append(l, ' ', button(`b-detach-${key}-${l}`, '×', `Detach ${port} from ${l}`, () => call('detach', { port, lan: l })));
  });
  li.append(' ', attachForm(port, key));
  const p = lab.ports.find((x) => x.name === port);
  if (p && p.impair) li.append(el('div', { class: 'impair' }, `impaired: ${p.impair}`));
  return li;
}

// structure is the lab without its counters: the panel is rebuilt only
// when it changes, so keyboard focus and reading position survive the
// counter updates.
function structure(lab) {
  return JSON.stringify(lab, (k, v) => (k === 'counters' ? undefined : v));
}

let lastStructure = '';

function renderPanel() {
  $('network').textContent = lab.network || '';
  const s = structure(lab);
  if (s !== lastStructure) {
    lastStructure = s;
    const focusId = document.activeElement && document.activeElement.id;
    const vms = lab.vms.map((v) => el('li', { 'data-key': `vm:${v.name}` },
      el('strong', {}, v.name), ' ',
      el('span', { class: `state ${stateClass(v.state)}` }, v.state || '?'), ' ',
      el('span', { class: 'muted' }, `${v.type}, ${v.mem} MB, ${v.rootfs}${v.accel ? `, ${v.accel}` : ''}`), ' ',
      v.mgmt ? el('span', { class: 'mgmt', title: 'management address (mgmt0): ssh root@ from the host' }, `mgmt ${v.mgmt}`) : '', ' ',
      button(`b-console-${v.name}`, 'Console', `Open the console of ${v.name}`, () => openConsole(v.name)), ' ',
      v.state === 'stopped'
        ? button(`b-startvm-${v.name}`, 'Start', `Start VM ${v.name} from its kept disk`, () => call('start_vm', { name: v.name }))
        : button(`b-stopvm-${v.name}`, 'Stop', `Stop VM ${v.name}, keeping its disk and links`, () => call('stop_vm', { name: v.name })), ' ',
      button(`b-delvm-${v.name}`, 'Delete', `Delete VM ${v.name}`, () => confirmDel(`VM ${v.name}`) && call('del_vm', { name: v.name })),
      el('ul', {}, ...v.eths.map((e) => portLine(e.port, e.port.replace(':', '-'))))));
    $('list-vms').replaceChildren(...(vms.length ? vms : [el('li', { class: 'muted' }, 'none')]));
    const lans = lab.lans.map((l) => el('li', { 'data-key': `lan:${l.name}` },
      el('strong', {}, l.name), ' ',
      el('span', { class: 'counters', 'data-lan': l.name }, lanCounters(l)), ' ',
      button(`b-dellan-${l.name}`, 'Delete', `Delete lan ${l.name}`, () => confirmDel(`lan ${l.name}`) && call('del_lan', { name: l.name })),
      el('div', { class: 'members' }, 'ports: ', l.ports.length ? l.ports.join(', ') : el('span', { class: 'muted' }, 'none'))));
    $('list-lans').replaceChildren(...(lans.length ? lans : [el('li', { class: 'muted' }, 'none')]));
    const tux = lab.tux.map((t) => el('li', { 'data-key': `tux:${t.name}` },
      el('strong', {}, t.name), ' ',
      el('span', { class: `state ${stateClass(t.state)}` }, t.state || '?'), ' ',
      el('span', { class: 'muted' }, `${t.kind}${t.restarts ? `, ${t.restarts} restarts` : ''}`), ' ',
      button(`b-deltux-${t.name}`, 'Delete', `Delete tux ${t.name}`, () => confirmDel(`tux ${t.name}`) && call('del_tux', { name: t.name })),
      el('ul', {}, portLine(t.name, `tux-${t.name}`)),
      (t.forwards || []).length ? el('div', { class: 'members' }, 'forwards: ', t.forwards.map((f) => `${f.proto} ${f.host} → ${f.guest}`).join(', ')) : null));
    $('list-tux').replaceChildren(...(tux.length ? tux : [el('li', { class: 'muted' }, 'none')]));
    const idx = portIndex(lab);
    const raw = lab.ports.filter((p) => idx.get(p.name).kind === 'port');
    $('sec-ports').hidden = raw.length === 0;
    $('list-ports').replaceChildren(...raw.map((p) => {
      const li = portLine(p.name, `port-${p.name}`);
      li.dataset.key = `port:${p.name}`;
      return li;
    }));
    $('lan-names').replaceChildren(...lab.lans.map((l) => el('option', { value: l.name })));
    if (focusId && $(focusId)) $(focusId).focus();
    applySearch();
  } else {
    for (const l of lab.lans) {
      const span = document.querySelector(`span.counters[data-lan="${CSS.escape(l.name)}"]`);
      if (span) span.textContent = lanCounters(l);
    }
  }
}

function applySearch() {
  const q = $('search').value.trim().toLowerCase();
  for (const li of document.querySelectorAll('#panel [data-key]')) {
    li.hidden = q !== '' && !li.textContent.toLowerCase().includes(q);
  }
  cy.batch(() => {
    cy.elements().removeClass('faded');
    if (!q) return;
    cy.nodes().forEach((n) => {
      const hit = (n.data('label') || '').toLowerCase().includes(q) || (n.data('port') || '').toLowerCase().includes(q);
      const parentHit = n.isChild() && (n.parent().data('label') || '').toLowerCase().includes(q);
      if (!hit && !parentHit && !n.children().some((c) => (c.data('label') || '').toLowerCase().includes(q))) n.addClass('faded');
    });
    cy.edges().addClass('faded');
  });
}
$('search').addEventListener('input', applySearch);

function render() {
  sync(lab);
  renderPanel();
  for (const [vm, t] of terminals) t.tab.classList.toggle('gone', !lab.vms.some((v) => v.name === vm));
}

// ---- consoles ------------------------------------------------------------

function selectConsole(vm) {
  for (const [name, t] of terminals) {
    const on = name === vm;
    t.pane.hidden = !on;
    t.tab.setAttribute('aria-selected', on ? 'true' : 'false');
  }
  const t = terminals.get(vm);
  if (t) {
    t.fit.fit();
    t.term.focus();
  }
}

function closeConsole(vm) {
  const t = terminals.get(vm);
  if (!t) return;
  t.closing = true;
  t.ws.close();
  t.term.dispose();
  t.tab.remove();
  t.pane.remove();
  terminals.delete(vm);
  if (terminals.size === 0) {
    $('consoles').hidden = true;
    dockChanged();
  } else selectConsole(terminals.keys().next().value);
}

// dockChanged lets the drawing take the room the console dock leaves or takes.
function dockChanged() {
  cy.resize();
  fitAll();
}

function fitAll() {
  cy.fit(undefined, 40);
  if (cy.zoom() > 1.6) {
    cy.zoom(1.6);
    cy.center();
  }
}

function openConsole(vm) {
  if ($('consoles').hidden) {
    $('consoles').hidden = false;
    dockChanged();
  }
  if (terminals.has(vm)) {
    selectConsole(vm);
    return;
  }
  const pane = el('div', { class: 'console-pane', role: 'tabpanel', 'aria-label': `console of ${vm}` });
  const tab = el('div', { class: 'tab' },
    el('button', { type: 'button', role: 'tab', onclick: () => selectConsole(vm) }, vm),
    button(`b-close-console-${vm}`, '×', `Close the console of ${vm}`, () => closeConsole(vm)));
  $('console-tabs').append(tab);
  $('console-body').append(pane);
  const term = new Terminal({ convertEol: true, cursorBlink: true, fontSize: 13, scrollback: 5000, screenReaderMode: false });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(pane);
  const t = { term, fit, tab, pane, ws: null, closing: false };
  terminals.set(vm, t);
  selectConsole(vm);
  const connect = () => {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/console?vm=${encodeURIComponent(vm)}&token=${encodeURIComponent(token)}`);
    ws.binaryType = 'arraybuffer';
    t.ws = ws;
    ws.onopen = () => { term.write(`\x1b[2m[console of ${vm}]\x1b[0m\r\n`); ws.send(new TextEncoder().encode('\r')); };
    ws.onmessage = (ev) => term.write(new Uint8Array(ev.data));
    ws.onclose = (ev) => {
      if (t.closing) return;
      term.write(`\r\n\x1b[31m[console closed${ev.reason ? `: ${ev.reason}` : ''}; press Enter to reconnect]\x1b[0m\r\n`);
      t.ws = null;
    };
  };
  term.onData((d) => {
    if (!t.ws) {
      if (d === '\r') connect();
      return;
    }
    if (t.ws.readyState === WebSocket.OPEN) t.ws.send(new TextEncoder().encode(d));
  });
  connect();
}

window.addEventListener('resize', () => {
  for (const t of terminals.values()) if (!t.pane.hidden) t.fit.fit();
});

// consoleText returns what a console shows (for tests and copy).
function consoleText(vm) {
  const t = terminals.get(vm);
  if (!t) return '';
  const b = t.term.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join('\n');
}

window.cloonix = { cy, get lab() { return lab; }, openConsole, consoleText, call };

setStatus();
connectLive();
