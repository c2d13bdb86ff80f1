#!/usr/bin/perl

# Tests for the status location's formats: its JSON keys (and the control
# location's) come in the README's order; Prometheus' text format (0.0.4) by
# Accept and by format=, and OpenMetrics for a Prometheus server's Accept,
# both read by the Python prometheus_client parsers, with values that match
# the JSON, the wait histogram counting an admission from the line; the
# history with history=1; the live page for a browser, with its headers.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get code body cookie json api log_errors /;

use Digest::SHA qw/ sha256_base64 /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(46);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=r:1m max_active=2;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            waiting_room r;
        }

        location /_wr/ {
            waiting_room_api r;
        }

        location = /status {
            waiting_room_status r;
        }

        location = /control {
            waiting_room_control r;
        }
    }
}

EOF

$t->write_file('index.html', "a page\n");
$t->run();

###############################################################################

my $prom_accept = 'application/openmetrics-text;version=1.0.0,'
	. 'application/openmetrics-text;version=0.0.1;q=0.75,'
	. 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
my $browser_accept = 'text/html,application/xhtml+xml,application/xml;q=0.9,'
	. 'image/avif,image/webp,*/*;q=0.8';

# a status request with the Accept given (none if undef)

sub status_req {
	my ($uri, $accept) = @_;
	my $a = defined $accept ? "Accept: $accept\n" : '';
	return http("GET $uri HTTP/1.0\nHost: localhost\n$a\n");
}

# the keys of a JSON text, in the order written (nested ones too)

sub keys_in_order {
	my ($text) = @_;
	return join ' ', $text =~ /"(\w+)":/g;
}

# the README's example for a section: the first ```json block after its title

sub readme_json {
	my ($title) = @_;
	open my $fh, '<', "$FindBin::Bin/../README.md" or return '';
	local $/;
	my $readme = <$fh>;
	return $readme =~ /^## \Q$title\E\n.*?^```json\n(.*?)^```/ms ? $1 : '';
}

# the samples of an exposition as the Python parser reads them: a hash of
# "name{label=value,...}" (without room) => [family type, room, value]

sub parse_metrics {
	my ($t, $text, $openmetrics) = @_;
	my $file = $t->testdir() . '/metrics.txt';
	$t->write_file('metrics.txt', $text);
	my $parser = $openmetrics
		? 'prometheus_client.openmetrics.parser'
		: 'prometheus_client.parser';
	my $py = <<"PY";
import json, sys
from $parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()) if kv[0] != "room")
        out["%s{%s}" % (s.name, labels)] = [fam.type, s.labels.get("room"), s.value]
print(json.dumps(out))
PY
	my $out = `/usr/bin/python3 -c '$py' '$file' 2>&1`;
	require JSON::PP;
	return eval { JSON::PP::decode_json($out) } || { error => [ $out ] };
}

###############################################################################

# what happens: A and B let in; C waits; A leaves and C, called, comes in from
# the line; D waits; a request that is not a page load and a crawler refused

my $a = cookie(get('/index.html'), 'r');
my $b = cookie(get('/index.html'), 'r');
my $c = cookie(get('/index.html'), 'r');
my $d;
is(code(api('POST', 'leave', $a)), 204, 'A leaves');
my $r = api('GET', 'position', $c);
is(json($r)->{state}, 'admitted', 'C let in from the line');
$d = cookie(get('/index.html'), 'r');
is(json(api('GET', 'position', $d))->{position}, 1, 'D waits');
is(code(http("GET /index.html HTTP/1.0\nHost: localhost\nAccept: */*\n\n")),
	503, 'not a page load refused');
is(code(http("GET /index.html HTTP/1.0\nHost: localhost\n"
	. "User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1)\n"
	. "Accept: text/html\n\n")), 503, 'crawler refused');

# JSON: the default, keys in the README's order

$r = status_req('/status');
like($r, qr!^Content-Type: application/json\s*$!mi, 'no Accept: json');
like($r, qr!^Vary: Accept\s*$!mi, 'json: Vary');
like(status_req('/status', '*/*'), qr!^Content-Type: application/json!mi,
	'curl: json');
like(status_req('/status', 'application/json'),
	qr!^Content-Type: application/json!mi, 'Accept json: json');
my $expected = keys_in_order(readme_json('The status location'));
ok($expected =~ /^room active_sessions .* control_changes .*estimated_wait_seconds$/,
	'the README has the example');
is(keys_in_order(body($r)), $expected,
	'status keys in the README order');
$expected = keys_in_order(readme_json('The control location'));
ok($expected =~ /^room max_active .* configured max_active/,
	'the README has the control example');
is(keys_in_order(body(http_get('/control'))), $expected,
	'control keys in the README order');

my $st = json($r);
is(join(' ', map { $st->{$_} } qw/ active_sessions queue_length
	admitted_total admitted_from_queue joined_total sessions_left
	refused_not_navigation refused_crawler /), '2 1 3 1 2 1 1 1',
	'the figures');

# Prometheus' text format 0.0.4, by Accept and by format=

$r = status_req('/status', 'text/plain;version=0.0.4');
like($r, qr!^Content-Type: text/plain; version=0\.0\.4; charset=utf-8\s*$!mi,
	'Accept text/plain 0.0.4: prometheus');
like($r, qr!^Vary: Accept\s*$!mi, 'prometheus: Vary');
like($r, qr!^Cache-Control: no-store\s*$!mi, 'prometheus: no-store');
like(status_req('/status?format=prometheus', $browser_accept),
	qr!^Content-Type: text/plain; version=0\.0\.4!mi, 'format=prometheus');
like(status_req('/status?format=json', $prom_accept),
	qr!^Content-Type: application/json!mi, 'format=json over Accept');
is(code(status_req('/status?format=xml')), 400, 'format=xml: 400');

my $text = body($r);
like($text, qr/^# HELP waiting_room_active_sessions .+\n# TYPE waiting_room_active_sessions gauge\n/m,
	'HELP and TYPE');
my $m = parse_metrics($t, $text);
ok(!$m->{error}, 'parsed by prometheus_client') or diag(explain($m));

my %gauges = (
	waiting_room_active_sessions => 'active_sessions',
	waiting_room_max_active => 'max_sessions',
	waiting_room_queue_length => 'queue_length',
	waiting_room_called_unclaimed => 'called_unclaimed',
);
my %counters = (
	waiting_room_joined_total => 'joined_total',
	waiting_room_admitted_total => 'admitted_total',
	waiting_room_admitted_from_queue_total => 'admitted_from_queue',
	waiting_room_tickets_abandoned_total => 'tickets_abandoned',
	waiting_room_tickets_missed_total => 'tickets_missed',
	waiting_room_tickets_left_total => 'tickets_left',
	waiting_room_sessions_left_total => 'sessions_left',
	waiting_room_sessions_expired_total => 'sessions_expired',
	waiting_room_rejected_full_total => 'rejected_full',
	'waiting_room_refused_total{reason=not_navigation}'
		=> 'refused_not_navigation',
	'waiting_room_refused_total{reason=crawler}' => 'refused_crawler',
	'waiting_room_refused_total{reason=client_limit}'
		=> 'refused_client_limit',
	waiting_room_turned_away_total => 'turned_away',
);

# the values against the JSON; nothing moves meanwhile (the sweep may end
# nobody: the sessions are fresh and the line moves only as someone leaves)

sub check_values {
	my ($m, $st, $what) = @_;
	my (@bad, %rooms);
	for my $g (sort keys %gauges) {
		my $s = $m->{"$g\{}"};
		push @bad, "$g: " . ($s ? "$s->[0] $s->[2]" : 'missing')
			unless $s && $s->[0] eq 'gauge'
			&& $s->[2] == $st->{ $gauges{$g} };
	}
	for my $k (sort keys %counters) {
		my $key = $k =~ /\{/ ? $k : "$k\{}";
		my $s = $m->{$key};
		push @bad, "$k: " . ($s ? "$s->[0] $s->[2]" : 'missing')
			unless $s && $s->[0] eq 'counter'
			&& $s->[2] == $st->{ $counters{$k} };
	}
	$rooms{ $_->[1] // '' }++ for values %$m;
	push @bad, 'rooms: ' . join(',', keys %rooms)
		unless join(',', keys %rooms) eq 'r';
	is(join('; ', @bad), '', "$what: values match the JSON");
}

check_values($m, $st, 'prometheus');

# the wait histogram: C's wait, under a second

my @le = qw/ 1 5 15 30 60 120 300 600 1800 3600 +Inf /;

sub check_histogram {
	my ($m, $what, $om) = @_;
	my @counts = map {
		my $le = $om && $_ ne '+Inf' ? "$_.0" : $_;
		$m->{"waiting_room_wait_seconds_bucket{le=$le}"}[2] // -1
	} @le;
	is(join(' ', @counts), '1 1 1 1 1 1 1 1 1 1 1', "$what: buckets");
	is($m->{'waiting_room_wait_seconds_count{}'}[2], 1, "$what: count");
	my $sum = $m->{'waiting_room_wait_seconds_sum{}'}[2] // -1;
	ok($sum >= 0 && $sum < 1, "$what: sum") or diag($sum);
	is($m->{'waiting_room_wait_seconds_count{}'}[0], 'histogram',
		"$what: a histogram");
}

check_histogram($m, 'prometheus');

# OpenMetrics for a Prometheus server's Accept

$r = status_req('/status', $prom_accept);
like($r, qr!^Content-Type: application/openmetrics-text; version=1\.0\.0; charset=utf-8\s*$!mi,
	'Prometheus server: openmetrics');
like(body($r), qr/\n# EOF\n\z/, 'openmetrics: # EOF');
$m = parse_metrics($t, body($r), 1);
ok(!$m->{error}, 'parsed by the openmetrics parser') or diag(explain($m));
check_values($m, $st, 'openmetrics');
check_histogram($m, 'openmetrics', 1);
like(status_req('/status?format=openmetrics'),
	qr!^Content-Type: application/openmetrics-text!mi, 'format=openmetrics');

# the history, a sample every 5 s

my $h;
for (1 .. 30) {
	$h = json(status_req('/status?history=1'))->{history};
	last if ref $h eq 'ARRAY' && @$h >= 2;
	select undef, undef, undef, 0.5;
}
ok(ref $h eq 'ARRAY' && @$h >= 2, 'history: samples') or diag(explain($h));
my $last = ref $h eq 'ARRAY' ? $h->[-1] : {};
is(join(' ', map { $last->{$_} // 'null' } qw/ active_sessions queue_length
	admitted_total /), '2 1 3', 'history: the last sample');
ok(ref $h eq 'ARRAY' && @$h >= 2
	&& $h->[0]{seconds_ago} - $h->[-1]{seconds_ago} >= 4,
	'history: oldest first, 5 s apart');
ok(!exists json(status_req('/status'))->{history}, 'no history unasked');

# the live page, for a browser

$r = status_req('/status', $browser_accept);
like($r, qr!^Content-Type: text/html; charset=utf-8\s*$!mi, 'browser: html');
like($r, qr!^Cache-Control: no-store\s*$!mi, 'html: no-store');
like($r, qr!^Vary: Accept\s*$!mi, 'html: Vary');
my ($csp) = $r =~ /^Content-Security-Policy: ([^\x0d\x0a]*)/mi;
my $page = body($r);
my ($style) = $page =~ m!<style>(.*?)</style>!s;
my ($script) = $page =~ m!<script>(.*?)</script>!s;
my $hash = sub { "'sha256-" . sha256_base64($_[0]) . "='" };
ok(defined $csp && defined $style && defined $script
	&& index($csp, "style-src " . $hash->($style)) >= 0
	&& index($csp, "script-src " . $hash->($script)) >= 0
	&& $csp =~ /default-src 'none'/ && $csp !~ /unsafe-inline/,
	'html: CSP allows its own inline style and script only')
	or diag($csp);
unlike($page, qr!(?:src|href)="(?:https?:)?//!, 'html: no external assets');

# nothing bad was logged

is(log_errors($t), '', 'no errors logged');

###############################################################################
