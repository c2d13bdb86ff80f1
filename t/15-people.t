#!/usr/bin/perl

# Tests for "only people take places": a first contact takes a place only when
# it comes back with the cookie, so a cookie-less flood leaves the line as it
# was; only page loads join; crawlers and requests that access checks refuse
# never hold a place; a client holds at most client_limit places, and a flood
# is logged once per interval with its counts.

###############################################################################

use warnings;
use strict;

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ req get first api code body wr pos_of cookie
	cookie_kind json conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http auth_basic access/)->plan(43);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=p:1m max_active=2;
    waiting_room_zone zone=lim:1m max_active=1 client_limit=3
                      client_key=$http_x_client;
    waiting_room_zone zone=bef:1m max_active=5;
    waiting_room_secret secret.key;

    map $http_x_probe $probe {
        default 0;
        yes     1;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room p;
            waiting_room_crawler $probe;
        }

        location /denied/ {
            waiting_room p;
            deny all;
        }

        location /denied-page/ {
            waiting_room p;
            error_page 403 /denied-page/sorry.html;
            location = /denied-page/sorry.html {
                waiting_room p;
                allow all;
            }
            deny all;
        }

        location /private/ {
            waiting_room p;
            auth_basic "private";
            auth_basic_user_file htpasswd;
        }

        location /seo/ {
            waiting_room p;
            waiting_room_crawlers pass;
        }

        location /img/ {
            waiting_room p;
            waiting_room_refuse_status 429;
        }

        location /lim/ {
            waiting_room lim api=/_wr_lim/;
        }

        location /before/ {
            waiting_room bef api=/_wr_bef/;
            waiting_room_gate before_access;
            deny all;
        }

        location /_wr/ { waiting_room_api p; }
        location /_wr_lim/ { waiting_room_api lim; }
        location /_wr_bef/ { waiting_room_api bef; }
        location = /status { waiting_room_status p; }
        location = /status/lim { waiting_room_status lim; }
        location = /status/bef { waiting_room_status bef; }
    }
}

EOF

$t->write_file('secret.key', 'k' x 40 . "\n");
$t->write_file('page.html', "a page\n");
$t->write_file('htpasswd', "u:" . crypt('p', 'xx') . "\n");
for my $d (qw/ denied denied-page private seo img lim before /) {
	mkdir $t->testdir() . "/$d";
	$t->write_file("$d/page.html", "$d page\n");
}
$t->write_file('denied-page/sorry.html', "sorry\n");
chmod 0755, $t->testdir() if $> == 0;

# nginx -t

my @bad = (
	['waiting_room_zone zone=z:1m client_key=$remote_addr;',
		'"client_key" parameter requires "client_limit" parameter'],
	['waiting_room_zone zone=z:1m client_limit=0;',
		'invalid client_limit value "0"'],
	['waiting_room_zone zone=z:1m confirm=5s confirm=6s;',
		'duplicate "confirm" parameter'],
	['waiting_room_zone zone=z:1m confirm=1s;',
		'"confirm=1s" must be at least 3s'],
	['waiting_room_zone zone=z:1m confirm=20m;',
		'"confirm=20m" must not be longer than "queue_timeout=900s"'],
	['waiting_room_zone zone=z:1m; waiting_room_gate first;',
		'invalid value "first", it must be "after_access" or "before_access"'],
	['waiting_room_zone zone=z:1m; waiting_room_crawlers allow;',
		'invalid value "allow", it must be "refuse" or "pass"'],
	['waiting_room_zone zone=z:1m; waiting_room_refuse_status 200;',
		'invalid value "200", it must be 403, 429 or 503'],
	['waiting_room_zone zone=z:1m; waiting_room_gate after_access; '
		. 'waiting_room_gate after_access;',
		'"waiting_room_gate" directive is duplicate'],
);
for my $case (@bad) {
	my ($http, $want) = @$case;
	my ($ok, $out) = conf_test($t, $http);
	ok(!$ok && index($out, $want) >= 0, "nginx -t: $want") or diag($out);
}
my ($ok, $out) = conf_test($t, 'waiting_room_zone zone=z:1m client_limit=5 '
	. 'client_key=$http_x_a$remote_addr confirm=10s; '
	. 'waiting_room_crawler $http_x_a $http_x_b; waiting_room_crawlers pass;');
ok($ok, 'nginx -t: the new settings') or diag($out);

$t->run();

###############################################################################

sub st {
	my ($uri) = @_;
	return json(http_get($uri || '/status'));
}

sub counts {
	my $s = st(@_);
	return "$s->{joined_total} $s->{active_sessions} $s->{queue_length}";
}

sub raw {
	my ($uri, $headers, $method) = @_;
	$method ||= 'GET';
	return http("$method $uri HTTP/1.0\nHost: localhost\n$headers\n");
}

my $chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
	. '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
my $nav = "Accept: text/html,application/xhtml+xml,*/*;q=0.8\n"
	. "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n"
	. "User-Agent: $chrome\n";

# two people inside, two in line

my (@in, @line);
push @in, cookie(get('/page.html'), 'p') for 1 .. 2;
push @line, cookie(get('/page.html'), 'p') for 1 .. 2;
is(counts(), '2 2 2', 'two inside, two in line');

# a cookie-less flood: 100,000 page loads from one client, none coming back

my $t0 = time();
my $flood = flood('/page.html', $nav, 100_000);
is($flood, 100_000, 'flood: every request answered');
is(counts(), '2 2 2', 'flood: the line is as it was');
my $next = get('/page.html');
ok(wr($next) eq 'QUEUED' && pos_of($next) == 3,
	'flood: the next person is third');
push @line, cookie($next, 'p');
diag(sprintf "flood of 100000 in %.1f s", time() - $t0)
	if $ENV{TEST_NGINX_VERBOSE};

# the flood is in the log, once, with its counts; not a line a request

# (at most one line per 10 s interval: one for each interval the flood and the
# request after it took, on a slow machine more than one)

my $took = time() - $t0;
my $log = $t->read_file('error.log');
my @lines = $log =~ /^.*waiting room "p" (?:since it started|in the last).*$/mg;
ok(@lines >= 1 && @lines <= 2 + int($took / 10), 'flood: logged once an interval')
	or diag(scalar @lines . " lines in $took s");
like($lines[0] // '', qr/of the first contacts, \d+ of \d{3,} sent to the line/,
	'flood: the counts');

# requests that cannot take a place leave joined_total, active_sessions
# and the line unchanged

my $g = raw('/page.html', "Accept: text/html\nUser-Agent: Mozilla/5.0 "
	. "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)\n");
ok(code($g) == 503 && wr($g) eq 'REFUSED' && !cookie($g, 'p')
	&& $g =~ /^Retry-After: \d+/mi, 'Googlebot: 503, Retry-After, no cookie');
my $h = raw('/page.html', $nav, 'HEAD');
ok(code($h) == 503 && wr($h) eq 'REFUSED' && !cookie($h, 'p'), 'HEAD: 503');
my $f = raw('/favicon.ico', "Accept: image/avif,image/webp,*/*\n"
	. "Sec-Fetch-Mode: no-cors\nSec-Fetch-Dest: image\nUser-Agent: $chrome\n");
ok(code($f) == 503 && wr($f) eq 'REFUSED', 'favicon fetch: 503');
my $x = raw('/page.html', "Accept: */*\nSec-Fetch-Mode: cors\n"
	. "Sec-Fetch-Dest: empty\nUser-Agent: $chrome\n");
ok(code($x) == 503 && wr($x) eq 'REFUSED', 'fetch(): 503');
my $c = raw('/page.html', "User-Agent: curl/8.5.0\nAccept: */*\n");
ok(code($c) == 503 && wr($c) eq 'REFUSED', 'curl: 503');
is(code(raw('/img/page.html', "Accept: image/*\n")), 429,
	'waiting_room_refuse_status');
my $p = raw('/page.html', "${nav}X-Probe: yes\n");
ok(code($p) == 503 && wr($p) eq 'REFUSED', 'waiting_room_crawler: 503');
my $d = raw('/denied/page.html', $nav);
is(code($d), 403, 'denied: 403');
is(wr($d), '', 'denied: the room never saw it');
my $e = raw('/denied-page/page.html', $nav);
ok(code($e) == 403 && wr($e) eq '' && $e =~ /sorry/,
	'denied with an error page: the page, no place');
my $a = raw('/private/page.html', $nav);
is(code($a), 401, 'auth_basic: 401, no place');
is(counts(), '3 2 3', 'refused requests took nothing');

# a crawler passed by the operator is served, with no place and no cookie

my $s = raw('/seo/page.html', "Accept: text/html\nUser-Agent: Mozilla/5.0 "
	. "(compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)\n");
ok(code($s) == 200 && wr($s) eq 'BYPASSED' && body($s) eq "seo page\n"
	&& !cookie($s, 'p'), 'waiting_room_crawlers pass');

# a visitor in line who sends a page's request keeps their place, with no page

my $img = http("GET /pic.png HTTP/1.0\nHost: localhost\nCookie: $line[0]\n"
	. "Accept: image/*\nSec-Fetch-Dest: image\nSec-Fetch-Mode: no-cors\n\n");
ok(code($img) == 503 && wr($img) eq 'QUEUED', 'image of one in line: 503');
is(counts(), '3 2 3', 'and nothing changed');

# a first contact gets the back of the line and an arrival, no place

my $r = first('/page.html');
my $arrival = cookie($r, 'p');
ok(wr($r) eq 'ARRIVED' && pos_of($r) == 4 && cookie_kind($arrival) == 3,
	'first contact: arrival, position 4');
like($r, qr/"arrival":true/, 'the page knows it is an arrival');
is(counts(), '3 2 3', 'an arrival takes no place');

# without the cookie, the page's question gets "none" (the page then says
# cookies are needed); with it, the place is taken, once

is(json(api('GET', 'position'))->{state}, 'none', 'no cookie: none');
my $j = api('GET', 'position', $arrival);
my $ticket = cookie($j, 'p');
ok(json($j)->{state} eq 'queued' && json($j)->{position} == 4
	&& cookie_kind($ticket) == 1, 'the return takes place 4');
is(json(api('GET', 'position', $arrival))->{position}, 4,
	'the same arrival again: the same place');
is(counts(), '4 2 4', 'one place taken');

# the per-client limit: 3 places for client "greedy", then 429

my @lim;
for (1 .. 5) {
	my $r = http(req('/lim/page.html') =~ s/\n\n$/\nX-Client: greedy\n\n/r);
	my $c = cookie($r, 'lim');
	$r = http(req('/lim/page.html', $c) =~ s/\n\n$/\nX-Client: greedy\n\n/r);
	push @lim, code($r) . ' ' . wr($r);
}
is(join(',', @lim),
	'200 PASSED,200 QUEUED,200 QUEUED,429 LIMITED,429 LIMITED',
	'client_limit: 3 places, then 429');
my $other = http(req('/lim/page.html') =~ s/\n\n$/\nX-Client: other\n\n/r);
is(wr($other), 'ARRIVED', 'another client is not limited');
is(json(http_get('/status/lim'))->{refused_client_limit}, 2,
	'client_limit: counted');

# before_access: the room holds visitors before access checks run, so a
# denied request takes a place (what after_access, the default, prevents)

my $b = get('/before/page.html');
is(code($b), 403, 'before_access: denied');
is(json(http_get('/status/bef'))->{active_sessions}, 1,
	'before_access: the denied request took a slot');

###############################################################################

# $n requests of $uri with $headers, pipelined on a few keep-alive
# connections, none sending a cookie; how many were answered

sub flood {
	my ($uri, $headers, $n) = @_;
	# nginx closes a keep-alive connection after 1000 requests
	my $per = 1000;
	my $conns = int($n / $per);
	my $req = "GET $uri HTTP/1.1\r\nHost: localhost\r\n"
		. join('', map { "$_\r\n" } split /\n/, $headers) . "\r\n";
	my $answered = 0;
	for my $i (1 .. $conns) {
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(8080))
			or return $answered;
		my $sent = 0;
		my ($buf, $seen) = ('', 0);
		while ($seen < $per) {
			# keep at most 200 requests in flight
			while ($sent < $per && $sent - $seen < 200) {
				print $s $req;
				$sent++;
			}
			my $got = sysread($s, $buf, 1 << 20, length $buf);
			last unless $got;
			my $k = () = $buf =~ m!HTTP/1\.1 \d{3} !g;
			$seen += $k;
			# keep the tail, which may hold the start of an answer
			$buf = substr($buf, -12);
		}
		$answered += $seen;
		close $s;
	}
	return $answered;
}

###############################################################################
