// The demo page of `mixllm serve` (mixllm_cli/serve/page.py). Plain DOM: every text that comes from
// the server or the user is set with textContent, never parsed as HTML.
(function () {
  'use strict';

  var KEY_STORE = 'mixllm.key';  // sessionStorage: this tab only, never in the URL
  var LIVE_EVERY_MS = 4000;

  var llms = new Map();  // LLM id -> its row of /v1/llms
  var connected = false;
  var running = false;
  var answered = null;  // the decision id whose answer the thumbs rate
  // performance.now() marks of the last run, read by benchmarks/bench_demo_page.py:
  // run (Run pressed), table (decision shown), firstToken, done (answer complete).
  window.mixllmTimings = {};

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function status(text) { $('status').textContent = text; }
  function clearError() { $('error').textContent = ''; }

  // ---------------------------------------------------------------- HTTP

  function HttpError(status, message, retryAfter) {
    this.status = status;
    this.message = message;
    this.retryAfter = retryAfter;
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORE) || ''; }

  function api(method, path, body) {
    var headers = {};
    var key = apiKey();
    if (key) headers.Authorization = 'Bearer ' + key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, {
      method: method, headers: headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      if (resp.ok) return resp;
      return resp.json().catch(function () { return null; }).then(function (j) {
        var msg = j && j.error && typeof j.error.message === 'string' ? j.error.message : resp.statusText;
        throw new HttpError(resp.status, msg, resp.headers.get('Retry-After'));
      });
    });
  }

  function explain(err) {
    if (!(err instanceof HttpError)) return 'The server could not be reached (' + (err && err.message) + ').';
    if (err.status === 401) return 'The server needs a valid API key (401): ' + err.message;
    if (err.status === 429) {
      return 'Too many requests for this key (429)' + (err.retryAfter ? ': try again in ' + err.retryAfter + ' s.' : '.');
    }
    if (err.status === 402) return 'This key\'s budget is spent (402): ' + err.message;
    return 'Error ' + err.status + ': ' + err.message;
  }

  function fail(err) {
    $('error').textContent = explain(err);
    status('');
    if (err instanceof HttpError && err.status === 401) askKey();
  }

  // ---------------------------------------------------------------- the key

  function askKey() {
    connected = false;
    delete document.documentElement.dataset.ready;
    $('key-section').hidden = false;
    $('key-state').hidden = true;
    $('key').focus();
  }

  function useKey(ev) {
    ev.preventDefault();
    var key = $('key').value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $('key').value = '';
    connect();
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_STORE);
    $('key-state').hidden = true;
    connect();
  }

  // ---------------------------------------------------------------- start

  function loadSamples() {
    return fetch('/static/samples.json', { cache: 'no-cache' }).then(function (r) { return r.json(); })
      .then(function (data) {
        var select = $('sample');
        var groups = new Map();
        data.samples.forEach(function (s, k) {
          if (!groups.has(s.task)) {
            var g = document.createElement('optgroup');
            g.label = s.task;
            groups.set(s.task, g);
            select.appendChild(g);
          }
          var opt = el('option', s.label);
          opt.value = String(k);
          groups.get(s.task).appendChild(opt);
        });
        select.addEventListener('change', function () {
          if (select.value === '') return;
          $('query').value = data.samples[Number(select.value)].query;
        });
      }).catch(function () { status('The sample queries could not be loaded; type your own.'); });
  }

  function fillBudgets(models) {
    var names = models.data.map(function (m) { return m.id; })
      .filter(function (id) { return id.indexOf('mixllm:') === 0; })
      .map(function (id) { return id.slice('mixllm:'.length); });
    if (!names.length) return;
    var select = $('budget');
    var keep = select.value;
    select.textContent = '';
    names.forEach(function (name) {
      var opt = el('option', name);
      opt.value = name;
      select.appendChild(opt);
    });
    select.value = names.indexOf(keep) >= 0 ? keep : (names.indexOf('medium') >= 0 ? 'medium' : names[0]);
  }

  function connect() {
    clearError();
    status('Connecting…');
    return api('GET', '/v1/models').then(function (r) { return r.json(); }).then(function (models) {
      fillBudgets(models);
      connected = true;
      $('key-section').hidden = true;
      $('key-state').hidden = !apiKey();
      status('Ready.');
      document.documentElement.dataset.ready = 'true';
      return refreshLive();
    }).catch(fail);
  }

  // ---------------------------------------------------------------- live state

  function fmt(v, digits) { return v === null || v === undefined ? '—' : Number(v).toFixed(digits); }

  function refreshLive() {
    if (!connected) return Promise.resolve();
    return api('GET', '/v1/llms').then(function (r) { return r.json(); }).then(function (rows) {
      llms = new Map(rows.map(function (row) { return [row.id, row]; }));
      var body = $('live-rows');
      body.textContent = '';
      rows.forEach(function (row) {
        var tr = document.createElement('tr');
        var th = el('th', row.id);
        th.scope = 'row';
        tr.appendChild(th);
        tr.appendChild(el('td', row.status));
        tr.appendChild(el('td', row.calls_in_flight + ' / ' + row.slots, 'num'));
        tr.appendChild(el('td', fmt(row.learned_ttft_ms, 0), 'num'));
        tr.appendChild(el('td', fmt(row.learned_output_tokens_per_s, 1), 'num'));
        var p = row.latency_p50_p95_ms;
        tr.appendChild(el('td', p ? fmt(p[0], 0) + ' / ' + fmt(p[1], 0) : '—', 'num'));
        tr.appendChild(el('td', row.upstream ? 'yes' : 'none'));
        body.appendChild(tr);
      });
      $('live-updated').textContent = 'Updated ' + new Date().toLocaleTimeString() + '.';
    }).catch(function (err) {
      if (err instanceof HttpError && err.status === 429) return;  // the next tick tries again
      fail(err);
    });
  }

  function tick() {
    if (!document.hidden) refreshLive();
  }

  // ---------------------------------------------------------------- run

  function cents(usd) {
    var c = usd * 100;
    if (c >= 100) return c.toFixed(0);
    if (c >= 1) return c.toFixed(2);
    return c === 0 ? '0' : c.toPrecision(2);
  }

  function renderDecision(d) {
    var body = $('decision-rows');
    body.textContent = '';
    d.candidates.forEach(function (c) {
      var chosen = c.llm === d.choice;
      var tr = document.createElement('tr');
      tr.dataset.llm = c.llm;
      if (chosen) {
        tr.className = 'chosen';
        tr.setAttribute('aria-selected', 'true');
      }
      // The marks sit beside the name, so a narrow screen shows them without scrolling the table.
      var th = el('th', c.llm);
      th.scope = 'row';
      var notes = [];
      if (chosen) notes.push('→ chosen');
      if (c.cold) notes.push('cold');
      if (c.score === null) notes.push('not offered');
      if (notes.length) th.appendChild(el('span', notes.join(' · '), 'notes'));
      tr.appendChild(th);
      tr.appendChild(el('td', fmt(c.predicted_quality, 3), 'num'));
      tr.appendChild(el('td', cents(c.predicted_cost_usd), 'num'));
      tr.appendChild(el('td', Math.round(c.expected_wait_ms).toString(), 'num'));
      tr.appendChild(el('td', c.score === null ? '—' : fmt(c.score, 3), 'num'));
      body.appendChild(tr);
    });
    var lam = Number(d.lambda).toPrecision(3);
    var how = d.budget !== null ? 'budget ' + d.budget + ' (λ = ' + lam + ')' : 'λ = ' + lam;
    $('decision').dataset.decisionId = d.decision_id || '';
    $('decision').dataset.choice = d.choice;
    $('decision-summary').textContent = 'Chosen: ' + d.choice + ' — ' + how + ', decision ' + d.decision_id + '.';
  }

  function resetAnswer() {
    $('answer').textContent = '';
    delete $('answer').dataset.decisionId;
    delete $('answer').dataset.llm;
    delete $('answer').dataset.done;
    $('answer-meta').textContent = '';
    $('feedback').hidden = true;
    $('feedback-status').textContent = '';
    ['good', 'bad'].forEach(function (id) { $(id).setAttribute('aria-pressed', 'false'); });
    answered = null;
  }

  function run(ev) {
    ev.preventDefault();
    if (running) return;
    clearError();
    var query = $('query').value;
    if (!query.trim()) {
      status('Type a query or pick a sample first.');
      $('query').focus();
      return;
    }
    var body = { query: query };
    var lamText = $('lambda').value.trim();
    if (lamText !== '') {
      var lam = Number(lamText);
      if (!isFinite(lam) || lam < 0) {
        $('error').textContent = 'λ must be a number ≥ 0 (or empty, to use the budget).';
        $('lambda').focus();
        return;
      }
      body.lambda = lam;
    } else {
      body.budget = $('budget').value;
    }
    var t = window.mixllmTimings = { run: performance.now() };
    running = true;
    $('run').disabled = true;
    resetAnswer();
    status('Routing…');
    api('POST', '/v1/route', body).then(function (r) { return r.json(); }).then(function (d) {
      renderDecision(d);
      t.table = performance.now();
      status('Chose ' + d.choice + '.');
      return refreshLive().then(function () { return answer(d, query, t); });
    }).catch(fail).then(function () {
      running = false;
      $('run').disabled = false;
      refreshLive();
    });
  }

  function answer(d, query, t) {
    var llm = llms.get(d.choice);
    if (!llm || !llm.upstream) {
      var p = $('answer');
      p.appendChild(document.createTextNode('No endpoint configured for ' + d.choice + ': '));
      p.appendChild(el('code', 'mixllm set-endpoint ' + d.choice + ' --base-url URL'));
      $('answer-meta').textContent = 'Without an endpoint this server can route to ' + d.choice + ' but not ask it.';
      p.dataset.done = 'true';
      status('Chose ' + d.choice + ' (no endpoint to answer).');
      return Promise.resolve();
    }
    status('Asking ' + d.choice + '…');
    var body = { model: 'mixllm', stream: true, messages: [{ role: 'user', content: query }],
                 mixllm: { decision_id: d.decision_id } };
    return api('POST', '/v1/chat/completions', body).then(function (resp) {
      var by = resp.headers.get('x-mixllm-llm') || d.choice;
      var id = resp.headers.get('x-mixllm-decision-id') || '';
      var from = resp.headers.get('x-mixllm-fallback-from');
      $('answer-meta').textContent = 'Answer from ' + by + (from ? ' (after ' + from + ' failed)' : '') +
        (id ? ', decision ' + id : '') + '.';
      $('answer').dataset.decisionId = id;
      $('answer').dataset.llm = by;
      $('answer').setAttribute('aria-busy', 'true');
      return stream(resp, t).then(function (usage) {
        t.done = performance.now();
        $('answer').setAttribute('aria-busy', 'false');
        if (usage && typeof usage.completion_tokens === 'number') {
          $('answer-meta').textContent += ' ' + usage.prompt_tokens + ' prompt and ' + usage.completion_tokens +
            ' answer tokens.';
        }
        status('Answered by ' + by + ' in ' + Math.round(t.done - t.run) + ' ms.');
        $('answer').dataset.done = 'true';
        if (id) {
          answered = id;
          $('feedback').hidden = false;
        }
      });
    });
  }

  function stream(resp, t) {
    // Server-sent events: `data: {chunk}` lines, `data: [DONE]` at the end.
    var text = document.createTextNode('');
    $('answer').appendChild(text);
    var reader = resp.body.getReader();
    var decoder = new TextDecoder();
    var buf = '';
    var usage = null;

    function line(raw) {
      if (raw.indexOf('data:') !== 0) return;
      var data = raw.slice(5).trim();
      if (data === '[DONE]' || data === '') return;
      var chunk;
      try { chunk = JSON.parse(data); } catch (e) { return; }
      if (chunk.error) throw new HttpError(502, chunk.error.message || 'the stream failed', null);
      (chunk.choices || []).forEach(function (c) {
        var content = c.delta && c.delta.content;
        if (typeof content === 'string' && content) {
          if (t.firstToken === undefined) t.firstToken = performance.now();
          text.appendData(content);
        }
      });
      if (chunk.usage) usage = chunk.usage;
    }

    function pump() {
      return reader.read().then(function (r) {
        buf += decoder.decode(r.value || new Uint8Array(), { stream: !r.done });
        var k;
        while ((k = buf.indexOf('\n')) >= 0) {
          line(buf.slice(0, k).replace(/\r$/, ''));
          buf = buf.slice(k + 1);
        }
        if (r.done) {
          line(buf);
          return usage;
        }
        return pump();
      });
    }
    return pump();
  }

  // ---------------------------------------------------------------- feedback

  function rate(good) {
    if (!answered) return;
    var id = answered;
    $('feedback-status').textContent = 'Sending…';
    api('POST', '/v1/feedback', { id: id, good: good }).then(function (r) { return r.json(); }).then(function (res) {
      $('good').setAttribute('aria-pressed', String(good));
      $('bad').setAttribute('aria-pressed', String(!good));
      $('feedback-status').textContent = (res.status === 'recorded' ? 'Recorded' : 'Already recorded') + ': ' +
        (good ? 'good' : 'bad') + ' answer, decision ' + id + '.';
    }).catch(function (err) {
      $('feedback-status').textContent = '';
      fail(err);
    });
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $('key-form').addEventListener('submit', useKey);
    $('forget-key').addEventListener('click', forgetKey);
    $('run-form').addEventListener('submit', run);
    $('query').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $('run-form').requestSubmit();
      }
    });
    $('good').addEventListener('click', function () { rate(true); });
    $('bad').addEventListener('click', function () { rate(false); });
    document.addEventListener('visibilitychange', tick);
    setInterval(tick, LIVE_EVERY_MS);
    loadSamples();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}());
