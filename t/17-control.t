#!/usr/bin/perl

# Tests for the control location (waiting_room_control): it shows the
# room's settings and changes them at run time for every worker, checks a
# change whole (a 400 changes nothing), asks for the bearer token when it has
# one, logs each change with the old and new values; a change survives a
# reload unless nginx.conf changed the same setting; and a flash sale goes on
# through live changes with nobody let in out of turn, never more inside
# than max_active.

###############################################################################

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http http_get /;
use Test::Nginx::WaitingRoom qw/ get api code body wr cookie json status
	reload_to conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http access/)->plan(34);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=m:1m max_active=MAX;
    waiting_room_zone zone=s:1m max_active=3;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /m/ { waiting_room m api=/m/_wr/; }
        location /m/_wr/ { waiting_room_api m; }
        location = /m/control {
            allow 127.0.0.1;
            deny all;
            waiting_room_control m;
        }
        location = /m/locked {
            waiting_room_control m token=control.token;
        }
        location = /m/denied {
            deny all;
            waiting_room_control m;
        }

        location /s/ { waiting_room s api=/s/_wr/; }
        location /s/_wr/ { waiting_room_api s; }
        location = /s/control { waiting_room_control s; }
        location = /s/status { waiting_room_status s; }

        location = /gen {
            return 200 "GEN";
        }
    }
}

EOF

$t->write_file('secret.key', 's' x 40);
$t->write_file('control.token', "  tok-0123456789abcdef  \nsecond line\n");
$t->write_file('short.token', "short\n");
for my $room (qw/ m s /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p.html", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

# what nginx -t refuses

my ($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m;\n"
	. "server { location /c { waiting_room_control z token=short.token; } }");
ok(!$ok && $out =~ /token file ".*short\.token" must start with a token of at least 16/,
	'nginx -t: a short token') or diag($out);
($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m;\n"
	. "server { location /c { waiting_room_control z colour=red; } }");
ok(!$ok && $out =~ /invalid parameter "colour=red"/, 'nginx -t: a bad parameter')
	or diag($out);
($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m;\n"
	. "server { location /c { waiting_room z; waiting_room_closed_status 302; } "
	. "location /_wr/ { waiting_room_api z; } }");
ok(!$ok && $out =~ /invalid value "302", it must be 200, 403, 404, 410 or 503/,
	'nginx -t: waiting_room_closed_status 302') or diag($out);

$t->write_file_expand('nginx.conf', conf(1, 'one'));
$t->run();

###############################################################################

# reading

my $c = json(http_get('/m/control'));
is(join(' ', @$c{qw/ room max_active mode model phase changes /}),
	'm 1 normal fifo open 0', 'GET: the settings');
ok(!defined $c->{rate} && !defined $c->{start} && $c->{configured}{max_active} == 1,
	'GET: none set, and what nginx.conf says');
is(code(http_get('/m/denied')), 403, 'allow/deny apply');

# changing: for every worker, at once

$c = change('/m/control', '{"max_active": 2, "model": "random", "rate": "90r/m"}');
is(join(' ', @$c{qw/ max_active model rate changes /}), '2 random 90r/m 1',
	'POST: changed');
my @seen = map { json(http_get('/m/control'))->{max_active} } 1 .. 6;
is("@seen", '2 2 2 2 2 2', 'every worker sees the change');
like($t->read_file('error.log'),
	qr/\[notice\].*waiting room "m" changed at run time by 127\.0\.0\.1: max_active 1 -> 2, model fifo -> random, rate none -> 90r\/m/,
	'the change logged with old and new values');
my $in1 = (visit('m'))[1];
my $in2 = (visit('m'))[1];
is("$in1 $in2", 'in in', 'the new max_active lets two in');

# a bad change is refused whole: nothing applies

for my $bad (
	['{"max_active": 3, "start": "2030-01-01T10:00:00Z", "end": "2030-01-01T09:00:00Z"}',
		'the end must be after the start'],
	['{"max_active": 100000}', 'max_active must be between 1 and'],
	['{"mode": "closed"}', 'invalid mode value "closed"'],
	['{"colour": "red"}', 'unknown setting "colour"'],
	['[1, 2]', 'the body must be a JSON object'],
	['{"max_active": 3', 'the body is not JSON'],
) {
	my ($body, $why) = @$bad;
	my $r = post('/m/control', $body);
	ok(code($r) == 400 && index(json($r)->{error} // '', $why) >= 0,
		"400: $why") or diag($r);
}
$c = json(http_get('/m/control'));
is(join(' ', @$c{qw/ max_active model changes /}), '2 random 1',
	'nothing of a refused change applied');

# other methods, bodies too long, the token

like(http("DELETE /m/control HTTP/1.0\nHost: localhost\n\n"),
	qr/^HTTP\/1\.\d 405.*^Allow: GET, HEAD, POST, PATCH/ms, '405 with Allow');
is(code(post('/m/control', '{"mode": "' . ('x' x 5000) . '"}')), 413,
	'413 for a long body');
my $r = post('/m/locked', '{"mode": "queue"}');
ok(code($r) == 401 && $r =~ /^WWW-Authenticate: Bearer/mi, '401 without the token');
is(code(post('/m/locked', '{"mode": "queue"}', 'Bearer tok-0123456789abcdeX')), 401,
	'401 with another token');
$r = post('/m/locked', '{"mode": "queue"}', 'bearer tok-0123456789abcdef');
is(json($r)->{mode}, 'queue', 'the token lets the change in');

# the body of a refused request is read and dropped: on a kept-alive
# connection it is not taken for a request of its own

my $inner = "GET /m/control HTTP/1.0\x0d\x0aHost: localhost\x0d\x0a\x0d\x0a";
$r = http("POST /m/locked HTTP/1.1\x0d\x0aHost: localhost\x0d\x0a"
	. 'Content-Length: ' . length($inner) . "\x0d\x0a\x0d\x0a$inner"
	. "GET /gen HTTP/1.1\x0d\x0aHost: localhost\x0d\x0aConnection: close"
	. "\x0d\x0a\x0d\x0a");
my @answers = ($r // '') =~ /HTTP\/1\.\d (\d{3}) /g;
is("@answers", '401 200', 'a refused body is not a request') or diag($r // 'no answer');

# a reload with the same nginx.conf keeps what was changed at run time; one
# that changes max_active in nginx.conf puts that in force, and keeps the rest

$t->write_file_expand('nginx.conf', conf(1, 'two'));
ok(reload_to($t, 'two'), 'reloaded, same settings');
$c = json(http_get('/m/control'));
is(join(' ', @$c{qw/ max_active model mode rate /}), '2 random queue 90r/m',
	'a reload keeps the run-time changes');

$t->write_file_expand('nginx.conf', conf(4, 'three'));
ok(reload_to($t, 'three'), 'reloaded, max_active changed');
$c = json(http_get('/m/control'));
is(join(' ', @$c{qw/ max_active model mode /}), '4 random queue',
	'the configuration\'s change applies, the rest stays');
like($t->read_file('error.log'),
	qr/waiting room "m" keeps what was set at run time: mode queue \(configured: normal\), model random \(configured: fifo\), rate 90r\/m \(configured: none\)/,
	'what stays is logged');

$c = change('/m/control', '{"reset": true}');
is(join(' ', @$c{qw/ max_active model mode /}) . ' ' . ($c->{rate} // 'none'),
	'4 fifo normal none', 'reset: back to nginx.conf');

###############################################################################

# a flash sale through live changes: 40 in line behind 3 inside; round after
# round everyone in line asks in the order they came, and whoever is inside
# leaves; meanwhile max_active goes to 5, the line is held, then released, a
# rate is set.  Nobody is let in while someone ahead of them, asking in the
# same round, is told to wait; never more inside (or called) than max_active.

my @inside = map { (visit('s'))[0] } 1 .. 3;
my @line = map { (visit('s'))[0] } 1 .. 40;
my (@order, %done, $over, $inversions, $rounds);
my %steps = (
	2 => '{"max_active": 5}',
	4 => '{"mode": "queue"}',
	6 => '{"mode": "normal"}',
	7 => '{"rate": "600r/m"}',
	9 => '{"max_active": 2}',
);
for my $round (1 .. 80) {
	last if @order == @line;
	$rounds = $round;
	change('/s/control', $steps{$round}) if $steps{$round};
	api('POST', 'leave', $_, '/s/_wr/') for @inside;
	@inside = ();
	my $waiting_ahead = 0;
	for my $i (0 .. $#line) {
		next if $done{$i};
		my $r = api('GET', 'position', $line[$i], '/s/_wr/');
		my $state = json($r)->{state};
		if ($state eq 'admitted') {
			$inversions++ if $waiting_ahead;
			$done{$i} = 1;
			push @order, $i;
			push @inside, cookie($r, 's');
		} elsif ($state eq 'queued') {
			$waiting_ahead = 1;
		}
	}
	my $st = status('/s/status');
	$over++ if $st->{active_sessions} + $st->{called_unclaimed}
		> $st->{max_sessions} && $round != 9 && $round != 10;
	select undef, undef, undef, 0.1;
}
note("flash sale: " . scalar(@order) . " of 40 in, in $rounds rounds");
is(scalar @order, 40, 'flash sale: everyone in');
is($inversions // 0, 0, 'flash sale: 0 FIFO inversions');
is(join(' ', @order), join(' ', 0 .. 39), 'flash sale: in the order they came');
is($over // 0, 0, 'flash sale: never more than max_active');
is(json(http_get('/s/control'))->{changes}, 5, 'flash sale: 5 changes');

###############################################################################

sub conf {
	my ($max, $gen) = @_;
	(my $c = $conf) =~ s/MAX/$max/;
	$c =~ s/GEN/$gen/;
	return $c;
}

sub post {
	my ($uri, $body, $auth) = @_;
	my $a = defined $auth ? "Authorization: $auth\n" : '';
	return http("POST $uri HTTP/1.0\nHost: localhost\n$a"
		. "Content-Type: application/json\n"
		. 'Content-Length: ' . length($body) . "\n\n$body");
}

sub change {
	my ($uri, $body) = @_;
	return json(post($uri, $body));
}

# a new visitor of $room: their cookie, and 'in' or 'queued'

sub visit {
	my ($room) = @_;
	my $r = get("/$room/p.html");
	return (cookie($r, $room), $r =~ /ORIGIN $room/ ? 'in' : 'queued');
}

###############################################################################
