package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestGraphCnt adds a container node from the graph page's dialog: it is
// drawn and listed as a VM with its type, and its console in the page
// answers.
func TestGraphCnt(t *testing.T) {
	needRunc(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	url := graphServer(t, l)
	ctx := browser(t)
	do(t, ctx, "open the page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("graph")))
	waitJS(t, ctx, 10*time.Second, "page connected", `document.getElementById('status').className === 'up'`)
	do(t, ctx, "add VM dialog", chromedp.Click(chromedp.ID("btn-add-vm")),
		chromedp.SendKeys(chromedp.CSS("#dlg-vm input[name=name]"), "K"),
		chromedp.SetValue(chromedp.CSS("#dlg-vm select[name=type]"), "cnt"),
		chromedp.SetValue(chromedp.CSS("#dlg-vm input[name=mem]"), "64"),
		chromedp.SetValue(chromedp.CSS("#dlg-vm input[name=eth]"), "1"),
		chromedp.Click(chromedp.CSS("#dlg-vm button[value=ok]")))
	waitJS(t, ctx, 20*time.Second, "K drawn running", `window.cloonix.cy.getElementById('vm:K').hasClass('state-running') && window.cloonix.cy.getElementById('eth:K:eth0').nonempty()`)
	if v := vmOf(l.List(), "K"); v == nil || v.Type != "cnt" || v.Mem != 64 || len(v.Eths) != 1 {
		t.Fatalf("K added as %+v", v)
	}
	if panel := js[string](t, ctx, `document.getElementById('panel').innerText`); !strings.Contains(panel, "cnt, 64 MB, busybox") {
		t.Errorf("the panel does not show K's type:\n%s", panel)
	}
	do(t, ctx, "open the console of K", chromedp.Click(chromedp.ID("b-console-K")))
	waitJS(t, ctx, 10*time.Second, "console connected", `window.cloonix.consoleText('K').includes('[console of K]')`)
	do(t, ctx, "type a command", chromedp.Sleep(300*time.Millisecond), typeLine("echo node-$((6*7))-$(hostname)"))
	Eventually(t, 20*time.Second, "the command answered in the console", func() error {
		if text := js[string](t, ctx, `window.cloonix.consoleText('K')`); !strings.Contains(text, "node-42-K") {
			return fmt.Errorf("console shows:\n%s", lastLines(text, 12))
		}
		return nil
	})
	do(t, ctx, "close the console", chromedp.Click(chromedp.ID("b-close-console-K")))
	js[bool](t, ctx, `(() => { window.confirm = () => true; return true; })()`)
	do(t, ctx, "delete K", chromedp.Click(chromedp.ID("b-delvm-K")))
	waitJS(t, ctx, 20*time.Second, "K gone", `window.cloonix.cy.getElementById('vm:K').empty()`)
}
