package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestLifecycleGraph: the graph page's menus stop and start a VM and
// pull an eth's cable; the panel's Start button boots it again.
func TestLifecycleGraph(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.MustRun("ctrl", "add", "vm", "g1", "--type", "uml", "--wait")
	l.MustRun("ctrl", "attach", "g1:eth0", "lan")
	url := graphServer(t, l)
	ctx := browser(t)
	do(t, ctx, "open the page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("graph")))
	waitJS(t, ctx, 10*time.Second, "g1 drawn running", `window.cloonix.cy.getElementById('vm:g1').hasClass('state-running')`)

	menu := func(id, item string, top bool) {
		t.Helper()
		shown := fmt.Sprintf(`!document.getElementById('menu').hidden && [...document.querySelectorAll('#menu button')].some(b => b.textContent === %q)`, item)
		// A VM's eths are drawn on its box where the layout puts them
		// (toward their lan), so one fixed point of the box is sometimes
		// an eth's and opens the eth's menu (one run in five): the click
		// is aimed at another point of the box, where the node is now,
		// until the node's own menu opens.
		points := [][2]float64{{0.5, 0.5}, {0.5, 0.1}, {0.5, 0.9}, {0.1, 0.5}, {0.9, 0.5}}
		if top {
			points[0], points[1] = points[1], points[0]
		}
		for k := 0; ; k++ {
			if k == 3*len(points) {
				t.Fatalf("menu item %s: no such menu after right clicks on %s", item, id)
			}
			p := points[k%len(points)]
			xy := js[[]float64](t, ctx, fmt.Sprintf(`(() => { const cy = window.cloonix.cy; const r = cy.container().getBoundingClientRect();
			const b = cy.getElementById(%q).renderedBoundingBox({ includeLabels: false, includeOverlays: false });
			return [r.left + b.x1 + (b.x2 - b.x1) * %v, r.top + b.y1 + (b.y2 - b.y1) * %v]; })()`, id, p[0], p[1]))
			do(t, ctx, "right click "+id, chromedp.MouseClickXY(xy[0], xy[1], chromedp.ButtonRight))
			opened := false
			for end := time.Now().Add(time.Second); time.Now().Before(end) && !opened; time.Sleep(50 * time.Millisecond) {
				opened = js[bool](t, ctx, shown)
			}
			if opened {
				break
			}
			js[bool](t, ctx, `(() => { document.getElementById('menu').hidden = true; return true; })()`)
		}
		js[bool](t, ctx, fmt.Sprintf(`(() => { [...document.querySelectorAll('#menu button')].find(b => b.textContent === %q).click(); return true; })()`, item))
	}
	state := func(want string) func() error {
		return func() error {
			if v := l.vmOf("g1"); v.State != want {
				return fmt.Errorf("g1 is %s", v.State)
			}
			return nil
		}
	}
	menu("vm:g1", "Stop VM g1", true)
	Eventually(t, 30*time.Second, "g1 stopped from the menu", state("stopped"))
	waitJS(t, ctx, 5*time.Second, "Start button", `document.getElementById('b-startvm-g1') !== null`)
	do(t, ctx, "start g1", chromedp.Click(chromedp.ID("b-startvm-g1")))
	Eventually(t, 60*time.Second, "g1 running after Start", state("running"))
	menu("eth:g1:eth0", "Link down g1:eth0", false)
	Eventually(t, 10*time.Second, "g1:eth0 down from the menu", func() error {
		if e := l.vmOf("g1").Eths[0]; e.Link != "down" {
			return fmt.Errorf("link %q", e.Link)
		}
		return nil
	})
	waitJS(t, ctx, 5*time.Second, "eth drawn down", `window.cloonix.cy.getElementById('eth:g1:eth0').hasClass('linkdown')`)
}
