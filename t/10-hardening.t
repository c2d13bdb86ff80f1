#!/usr/bin/perl

# Tests for the hardening of issue 6: "nginx -t" refuses a secret or a page
# that is not a regular file (a FIFO, /dev/zero) at once, and a secret that is
# too long; it refuses timings that contradict each other and a protected
# location whose page would poll no API, or another room's; the API refuses
# chunked bodies; the sweep timers run in the worker processes only (not in
# the cache manager and loader); a full queue is logged; a reload that changes
# max_active keeps everyone in the room and in line.

###############################################################################

use warnings;
use strict;

use Test::More;
use IO::Socket::INET;
use POSIX qw/ mkfifo /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api code wr json status reload_to
	conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy cache/)->plan(82);
my $d = $t->testdir();

# the error log the checks below write to

$t->write_file('error.log', '');
$t->write_file('key32', 'k' x 32);
$t->write_file('key5000', 'k' x 5000);
$t->write_file('page.html', "a page\n");
mkfifo("$d/fifo", 0600) or die "Can't mkfifo $d/fifo: $!";
chmod 0755, $d if $> == 0;

my $Z = 'waiting_room_zone zone=r:1m;';

###############################################################################

# a secret or a page that is not a regular file is refused at once: reading a
# FIFO would block "nginx -t" (and a reload) for ever, /dev/zero never ends

my @files = (
	['secret fifo', "$Z\nwaiting_room_secret fifo;",
		qq{waiting_room_secret "$d/fifo" is not a regular file}],
	['secret /dev/zero', "$Z\nwaiting_room_secret /dev/zero;",
		'waiting_room_secret "/dev/zero" is not a regular file'],
	['secret too long', "$Z\nwaiting_room_secret key5000;",
		qq{waiting_room_secret "$d/key5000" is too long: }
		. '5000 bytes, at most 4096'],
	['page fifo', "$Z\nserver {\nwaiting_room_page fifo;\n}",
		qq{waiting_room_page "$d/fifo" is not a regular file}],
);

for my $c (@files) {
	my ($name, $http, $expect) = @$c;
	my ($ok, $out, $hung) = conf_test($t, $http);
	ok(!$ok && !$hung, "$name: fails at once") or diag($hung // '');
	like($out, emerg($expect), "$name: message") or diag($out);
}

# timings that contradict each other, and a room polling another's API

my @cases = (
	['state file in a missing directory',
		'waiting_room_zone zone=r:1m state=no/such/dir/r.state;',
		'no/such/dir/r.state" is in a directory that cannot be used (2: No such file or directory)'],
	['state file that is a directory',
		'waiting_room_zone zone=r:1m state=/tmp;',
		'state file "/tmp" is not a regular file'],
	['state file of two rooms',
		"waiting_room_zone zone=r:1m state=/tmp/wr-x.state;\n"
		. 'waiting_room_zone zone=s:1m state=/tmp/../tmp/wr-x.state;',
		'state file "/tmp/wr-x.state" is already used by another room'],
	['empty state file name',
		'waiting_room_zone zone=r:1m state=;',
		'invalid state value ""'],
	['claim_window longer than queue_timeout',
		'waiting_room_zone zone=r:1m claim_window=60s queue_timeout=30s;',
		'"claim_window=60s" must not be longer than "queue_timeout=30s"'],
	['claim_window longer than the default queue_timeout',
		'waiting_room_zone zone=r:1m claim_window=901s;',
		'"claim_window=901s" must not be longer than "queue_timeout=900s"'],
	['session shorter than idle',
		'waiting_room_zone zone=r:1m session=60s idle=90s heartbeat=10s;',
		'"session=60s" must not be shorter than "idle=90s"'],
	['session shorter than the default idle',
		'waiting_room_zone zone=r:1m session=60s;',
		'"session=60s" must not be shorter than "idle=90s"'],
	['a second room polls the API of the first',
		"waiting_room_zone zone=a:1m;\nwaiting_room_zone zone=b:1m;\n"
		. "server {\nlisten 127.0.0.1:8080;\n"
		. "location /a/ { waiting_room a; }\n"
		. "location /b/ { waiting_room b; }\n"
		. "location /_wr/ { waiting_room_api a; }\n}",
		'waiting room "b" polls "/_wr/", which is the API of waiting room "a"'],
);

for my $c (@cases) {
	my ($name, $http, $expect) = @$c;
	my ($ok, $out) = conf_test($t, $http);
	ok(!$ok, "$name: fails");
	like($out, emerg($expect), "$name: message") or diag($out);
}

# the errors found once the whole configuration is read name the line of the
# directive at fault

my ($ok, $out) = conf_test($t, "$Z\nserver {\nlisten 127.0.0.1:8080;\n"
	. "location / {\nwaiting_room r;\n}\n}");
my $line = line_of($t, 'waiting_room r;');
ok(!$ok, 'no API location: fails');
like($out, emerg('waiting room "r" polls "/_wr/" but no location there has '
	. '"waiting_room_api r"', $line), 'no API location: message and line')
	or diag("line $line: $out");

($ok, $out) = conf_test($t, "$Z\nserver {\nlisten 127.0.0.1:8080;\n"
	. "location / {\nwaiting_room x;\n}\n"
	. "location /_wr/ {\nwaiting_room_api r;\n}\n}");
$line = line_of($t, 'waiting_room x;');
ok(!$ok, 'unknown room: fails');
like($out, emerg('unknown waiting room "x"', $line),
	'unknown room: message and line') or diag("line $line: $out");

# the location nginx would choose for each endpoint: an exact location for
# one endpoint only leaves the others unserved; the longest prefix wins

($ok, $out) = conf_test($t, "$Z\nserver {\nlisten 127.0.0.1:8080;\n"
	. "location / {\nwaiting_room r;\n}\n"
	. "location = /_wr/position {\nwaiting_room_api r;\n}\n}");
ok(!$ok, 'API for one endpoint only: fails');
like($out, emerg('waiting room "r" polls "/_wr/", but no "waiting_room_api r" '
	. 'location serves "/_wr/heartbeat"'), 'API for one endpoint only: message');

($ok, $out) = conf_test($t, "$Z\nwaiting_room_zone zone=b:1m;\n"
	. "server {\nlisten 127.0.0.1:8080;\n"
	. "location / {\nwaiting_room r api=/_wr/r/;\n}\n"
	. "location /_wr/ {\nwaiting_room_api r;\n}\n"
	. "location /_wr/r/ {\nwaiting_room_api b;\n}\n}");
ok(!$ok, 'a longer prefix of another room: fails');
like($out, emerg('waiting room "r" polls "/_wr/r/", which is the API of '
	. 'waiting room "b"'), 'a longer prefix of another room: message');

# good configurations still pass

my @good = (
	['api= with its own API location',
		"$Z\nserver {\nlisten 127.0.0.1:8080;\n"
		. "location /s/ { waiting_room r api=/_s/; }\n"
		. "location /_s/ { waiting_room_api r; }\n}"],
	['room at server level',
		"$Z\nserver {\nlisten 127.0.0.1:8080;\nwaiting_room r;\n"
		. "location / { }\n"
		. "location /_wr/ { waiting_room_api r; }\n}"],
	['regex API location',
		"$Z\nserver {\nlisten 127.0.0.1:8080;\n"
		. "location / { waiting_room r; }\n"
		. "location ~ ^/_wr/ { waiting_room_api r; }\n}"],
	['claim_window equal to queue_timeout',
		'waiting_room_zone zone=r:1m claim_window=30s queue_timeout=30s;'],
	['session equal to idle',
		'waiting_room_zone zone=r:1m session=60s idle=60s heartbeat=10s;'],
);

for my $c (@good) {
	my ($name, $http) = @$c;
	($ok, $out) = conf_test($t, $http);
	ok($ok, "good: $name: passes") or diag($out);
	like($out, qr/test is successful/, "good: $name: successful");
}

###############################################################################

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    proxy_cache_path %%TESTDIR%%/cache keys_zone=c:1m;

    waiting_room_zone zone=r:1m;
    waiting_room_zone zone=tiny:32k max_active=1;
    waiting_room_zone zone=m:1m max_active=MAX;
    waiting_room_secret key32;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /r/ {
            alias %%TESTDIR%%/;
            waiting_room r;
        }

        location /_wr/ {
            waiting_room_api r;
        }

        location /tiny/ {
            alias %%TESTDIR%%/;
            waiting_room tiny api=/_wr_tiny/;
        }

        location /_wr_tiny/ {
            waiting_room_api tiny;
        }

        location = /status/tiny {
            waiting_room_status tiny;
        }

        location /m/ {
            alias %%TESTDIR%%/;
            waiting_room m api=/_wr_m/;
        }

        location /_wr_m/ {
            waiting_room_api m;
        }

        location = /status/m {
            waiting_room_status m;
        }

        location = /gen {
            return 200 "GEN";
        }
    }
}

EOF

$t->write_file_expand('nginx.conf', conf(2, 'one'));
$t->run();
my $started = time();

###############################################################################

# the sweep timers start in the two workers only, not in the cache manager
# and the cache loader: two lines for each room

my %rooms = map { $_ => 0 } qw/ r tiny m /;
for (1 .. 50) {
	count_sweeps($t, \%rooms);
	last unless grep { $_ < 2 } values %rooms;
	select undef, undef, undef, 0.1;
}
sleep 1;
select undef, undef, undef, 0.1 while time() - $started < 2;
count_sweeps($t, \%rooms);

for my $room (sort keys %rooms) {
	is($rooms{$room}, 2, "sweep timers of room $room: one per worker");
}

# a chunked body to the API is refused whatever its size; a visitor inside
# is not let go by a refused "leave"

my $in = cookie(get('/r/page.html'), 'r');
is(wr(get('/r/page.html', $in)), 'PASSED', 'chunked: a visitor inside');

for my $e (qw/ heartbeat leave /) {
	my $head = "POST /_wr/$e HTTP/1.1\nHost: localhost\nCookie: $in\n"
		. "Connection: close\n";
	my $r = http($head . "Transfer-Encoding: chunked\n\n"
		. sprintf("%x\n", 65536) . ('x' x 65536) . "\n0\n\n");
	is(code($r), 413, "$e: chunked body of 64k: 413");
	$r = http($head . "Transfer-Encoding: chunked\n\na\n0123456789\n0\n\n");
	is(code($r), 413, "$e: chunked body of 10 bytes: 413");
	$r = http($head . "Content-Length: 5000\n\n", body => 'x' x 5000);
	is(code($r), 413, "$e: body of 5000 bytes: 413");
	is(code(api('POST', $e)), 403, "$e: no body, no cookie: 403");
}

is(wr(get('/r/page.html', $in)), 'PASSED', 'chunked: the visitor is still in');

# a full queue: the visitor turned away is logged

is(wr(get('/tiny/page.html')), 'ADMITTED', 'tiny room admits one');
my $cap = status('/status/tiny')->{queue_capacity};
ok($cap && $cap >= 64 && $cap <= 4000, 'tiny queue capacity')
	or diag("queue_capacity " . ($cap // 'undef'));
$cap = 0 unless $cap && $cap <= 4000;

my $filled = 0;
for (1 .. $cap) {
	$filled++ if wr(get('/tiny/page.html')) eq 'QUEUED';
}
is($filled, $cap, 'tiny queue filled');

unlike($t->read_file('error.log'), qr/waiting room "tiny" is full/,
	'not full yet: nothing logged');
is(code(get('/tiny/page.html')), 503, 'full: 503');
like($t->read_file('error.log'),
	qr/^.*\[warn\] .*waiting room "tiny" is full/m, 'full: logged');

# max_active raised on a reload: everyone is kept, and the slot it adds goes
# to the first in line

my %v;
for my $n (qw/ A B C D /) {
	$v{$n} = cookie(get('/m/page.html'), 'm');
}
is(join(' ', map { wr(get('/m/page.html', $v{$_})) } qw/ A B /),
	'PASSED PASSED', 'm: A and B in');
is(positions(qw/ C D /), 'C:1 D:2', 'm: C and D waiting');

# a reload that fails after the zones were set up (its new listen socket is
# taken) changes nothing: the running room keeps its max_active, C waits

my $taken = IO::Socket::INET->new(Proto => 'tcp',
	LocalAddr => '127.0.0.1:' . port(8081), ReuseAddr => 1,
	Listen => 1) or die "Can't listen on 8081: $!";
(my $bad = conf(3, 'bad')) =~ s/(listen\s+127\.0\.0\.1:8080[^;]*;)/$1\n        listen 127.0.0.1:8081;/;
$t->write_file_expand('nginx.conf', $bad);
$t->reload();
my $failed = 0;
for (1 .. 50) {
	$failed = $t->read_file('error.log') =~ /\[emerg\].*bind\(\) to 127\.0\.0\.1:\d+ failed/;
	last if $failed;
	select undef, undef, undef, 0.1;
}
ok($failed, 'failed reload: bind failed');
select undef, undef, undef, 0.5;
is(positions(qw/ C D /), 'C:1 D:2', 'failed reload: C and D still wait');
is(status('/status/m')->{max_sessions}, 2, 'failed reload: max_sessions as it was');
close $taken;

$t->write_file_expand('nginx.conf', conf(3, 'two'));
ok(reload_to($t, 'two'), 'reloaded with max_active=3');

like(get('/m/page.html', $v{A}), qr/^X-WR: PASSED/m, 'raised: A still in');
like(get('/m/page.html', $v{B}), qr/^X-WR: PASSED/m, 'raised: B still in');

my $r = api('GET', 'position', $v{C}, '/_wr_m/');
is(json($r)->{state}, 'admitted', 'raised: C let in from the line');
$v{C} = cookie($r, 'm');
like(get('/m/page.html', $v{C}), qr/^X-WR: PASSED/m, 'raised: C passes');
is(positions(qw/ D /), 'D:1', 'raised: D first in line');
is(status('/status/m')->{max_sessions}, 3, 'raised: max_sessions');

# max_active lowered: nobody inside is let go, nobody is let in until fewer
# than max_active are inside

$t->write_file_expand('nginx.conf', conf(1, 'three'));
ok(reload_to($t, 'three'), 'reloaded with max_active=1');

is(join(' ', map { wr(get('/m/page.html', $v{$_})) } qw/ A B C /),
	'PASSED PASSED PASSED', 'lowered: A, B and C still in');
is(positions(qw/ D /), 'D:1', 'lowered: D still first in line');
my $st = status('/status/m');
is("$st->{active_sessions} $st->{max_sessions} $st->{queue_length}", '3 1 1',
	'lowered: status');

like(api('POST', 'leave', $v{A}, '/_wr_m/'), qr/^HTTP\/1\.\d 204/,
	'lowered: A leaves');
is(positions(qw/ D /), 'D:1', 'lowered: two inside, D still waits');
api('POST', 'leave', $v{$_}, '/_wr_m/') for qw/ B C /;
is(positions(qw/ D /), 'D:admitted', 'lowered: none inside, D let in');

###############################################################################

sub conf {
	my ($max, $gen) = @_;
	(my $c = $conf) =~ s/MAX/$max/;
	$c =~ s/GEN/$gen/;
	return $c;
}

# an [emerg] line with the message $msg, and if $line is given, nginx's
# " in FILE:LINE" after it, for that line of test.conf

sub emerg {
	my ($msg, $line) = @_;
	return qr/\[emerg\] .*\Q$msg\E/ unless defined $line;
	return qr/\[emerg\] .*\Q$msg\E in \Q$d\E\/test\.conf:$line\b/;
}

# the number of the first line of test.conf that has $text

sub line_of {
	my ($t, $text) = @_;
	my @lines = split /\n/, $t->read_file('test.conf'), -1;
	for my $i (0 .. $#lines) {
		return $i + 1 if index($lines[$i], $text) >= 0;
	}
	return 0;
}

sub count_sweeps {
	my ($t, $rooms) = @_;
	my $log = $t->read_file('error.log');
	for my $room (keys %$rooms) {
		$rooms->{$room} = () =
			$log =~ /waiting room "\Q$room\E": sweep timer started/g;
	}
}

sub cookie {
	my ($r, $room) = @_;
	return Test::Nginx::WaitingRoom::cookie($r, $room) // '';
}

# "name:position" while waiting in room "m", "name:state" otherwise

sub positions {
	return join ' ', map {
		my $j = json(api('GET', 'position', $v{$_}, '/_wr_m/'));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

###############################################################################
