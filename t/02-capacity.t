#!/usr/bin/perl

# Tests for the waiting room gate: capacity shared by all workers, admitted
# visitors passing again, the queue page, bad cookies treated as no cookie,
# a full queue, and the $waiting_room_* variables in an access log.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http_start http_end /;
use Test::Nginx::WaitingRoom qw/ req get code body wr status log_errors come_back /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(76);

# "reuseport" gives each worker its own listening socket, so that connections
# from different client ports are spread over both workers.

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=cap:1m max_active=3;
    waiting_room_zone zone=other:1m max_active=3;
    waiting_room_zone zone=tiny:32k max_active=1;
    waiting_room_zone zone=span:32k max_active=1;
    waiting_room_zone zone=race:1m max_active=5;
    waiting_room_secret secret.key;

    log_format wr '$http_x_visitor $request_uri $status '
                  '$waiting_room_status $waiting_room_position '
                  '$waiting_room_wait $pid';

    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        access_log %%TESTDIR%%/wr.log wr;
        add_header X-WR $waiting_room_status always;
        add_header X-WR-Pos $waiting_room_position always;

        location / {
            waiting_room cap;
        }

        location /other/ {
            alias %%TESTDIR%%/;
            waiting_room other api=/_wr_other/;
        }

        location /_wr_other/ {
            waiting_room_api other;
        }

        location /tiny/ {
            alias %%TESTDIR%%/;
            waiting_room tiny api=/_wr_tiny/;
        }

        location /_wr_tiny/ {
            waiting_room_api tiny;
        }

        location /span/ {
            alias %%TESTDIR%%/;
            waiting_room span api=/_wr_span/;
        }

        location /_wr_span/ {
            waiting_room_api span;
        }

        location = /status/span {
            waiting_room_status span;
        }

        location /race/ {
            alias %%TESTDIR%%/;
            waiting_room race api=/_wr_race/;
        }

        location /_wr_race/ {
            waiting_room_api race;
        }

        location = /status/race {
            waiting_room_status race;
        }

        location /open/ {
            alias %%TESTDIR%%/;
        }

        location /_wr/ {
            waiting_room_api cap;
        }

        location = /status {
            waiting_room_status cap;
        }

        location = /status/tiny {
            waiting_room_status tiny;
        }
    }
}

EOF

$t->write_file('secret.key', 'k' x 40 . "\n");
$t->write_file('index.html', "inside\n");
$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

# Fresh visitors, all at once on separate connections: exactly 3 are let in,
# the rest are sent to the line with an arrival and no place yet (all at the
# back of an empty line); coming back with the cookie, as the queue page does
# at once, they take places 1..N.  "/" is served through an internal redirect
# to /index.html: the gate must decide once per request.

my @s = map { http_start(req('/', undef, "fresh$_")) } 1 .. 30;
my @r = map { defined $_ ? http_end($_) : undef } @s;

my @in = grep { body($_) eq "inside\n" } @r;
my @arrived = grep { wr($_) eq 'ARRIVED' } @r;

is(scalar @in, 3, 'three admitted at once');
is(scalar @arrived, 27, '27 sent to the line at once');
is(join(' ', map { pos_of($_) } @arrived), join(' ', (1) x 27),
	'arrivals take no place');
is(scalar(grep { code($_) == 200 } @r), 30, 'all 200');
is(scalar(grep { wr($_) eq 'ADMITTED' } @in), 3, 'admitted: ADMITTED');

my $n = 0;
my @queued = map { come_back($_, '/', undef, 'fresh' . ++$n) } @arrived;
come_back($_, '/', undef, 'fresh-in') for @in;
is(join(' ', sort { $a <=> $b } map { pos_of($_) } @queued),
	join(' ', 1 .. 27), 'queue positions 1..27');
is(scalar(grep { wr($_) eq 'QUEUED' } @queued), 27, 'queued: QUEUED');
is(scalar(grep { cookie($_, 'cap') } @r), 30, 'everyone gets a cookie');
is(scalar(grep { cookie($_, 'cap') } @queued), 27, 'a ticket for each');

my $q = $queued[0];
like($q, qr/^Cache-Control: no-store\x0d?$/mi, 'queue page no-store');
like($q, qr/^Retry-After: \d+\x0d?$/mi, 'queue page Retry-After');
like($q, qr!^Content-Type: text/html!mi, 'queue page html');
like($q, qr!You are number <strong id="pos">\d+</strong> in line!,
	'queue page text');
like(cookie_line($q, 'cap'), qr/; *HttpOnly/i, 'cookie HttpOnly');
like(cookie_line($q, 'cap'), qr/; *SameSite=Lax/i, 'cookie SameSite');
like(cookie_line($q, 'cap'), qr/; *Path=\//i, 'cookie Path');
like(cookie($q, 'cap'), qr/^wr_cap=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
	'cookie value format');

my $st = status('/status');
is($st->{active_sessions}, 3, 'status active');
is($st->{max_sessions}, 3, 'status max');
is($st->{queue_length}, 27, 'status queue length');

# admitted visitors pass, again and again, with no new cookie

my @in_cookies = map { cookie($_, 'cap') } @in;
my $passed = 0;
for my $i (1 .. 3) {
	for my $c (@in_cookies) {
		my $r = get('/page.html', $c, "in$i");
		$passed++ if body($r) eq "a page\n" && wr($r) eq 'PASSED'
			&& !defined cookie($r, 'cap');
	}
}
is($passed, 9, 'admitted visitors pass again and again');

# queued visitors keep their ticket and position

my %pos = map { cookie($_, 'cap') => pos_of($_) } @queued;
my ($kept, $nocookie) = (0, 0);
for my $c (keys %pos) {
	my $r = get('/page.html', $c, 'again');
	$kept++ if (pos_of($r) // 0) == $pos{$c} && wr($r) eq 'QUEUED';
	$nocookie++ unless defined cookie($r, 'cap');
}
is($kept, 27, 'queued visitors keep their place');
is($nocookie, 27, 'queued visitors get no new ticket');

$st = status('/status');
is($st->{active_sessions}, 3, 'still 3 active');
is($st->{queue_length}, 27, 'still 27 queued');

# bad cookies are no cookie: a new visitor, queued at the end

my $good = $in_cookies[0];
my ($payload, $mac) = $good =~ /^wr_cap=([^.]+)\.(.+)$/;
my $other = cookie(get('/other/page.html', undef, 'other'), 'other');
(my $foreign = $other) =~ s/^wr_other=/wr_cap=/;

my %bad = (
	'tampered mac' => "wr_cap=$payload." . flip($mac),
	'tampered payload' => 'wr_cap=' . flip($payload) . ".$mac",
	'swapped parts' => "wr_cap=$mac.$payload",
	'no mac' => "wr_cap=$payload",
	'empty mac' => "wr_cap=$payload.",
	'foreign room' => $foreign,
	'garbage' => 'wr_cap=garbage',
	'empty' => 'wr_cap=',
	'dots' => 'wr_cap=....',
	'not base64' => 'wr_cap=%00%ff.<script>',
	'huge' => 'wr_cap=' . ('A' x 6000) . '.' . ('B' x 100),
	'long valid prefix' => $good . ('A' x 200),
	'other name' => "wr_capx=$payload.$mac",
);

$n = 28;
for my $name (sort keys %bad) {
	my $r = get('/page.html', $bad{$name}, "bad");
	ok(code($r) == 200 && wr($r) eq 'QUEUED' && (pos_of($r) // 0) == $n++
		&& cookie($r, 'cap'), "bad cookie: $name");
}

# a bad cookie next to a good one does not hide it

like(get('/page.html', "wr_cap=garbage; $good; wr_cap=x.y", 'pair'),
	qr/^X-WR: PASSED/m, 'good cookie among bad ones');

# the "other" room's cookie under its own name does not count here either

like(get('/page.html', $other, 'other2'), qr/^X-WR: QUEUED/m,
	'other room cookie under its name');

# outside the room nothing is decided

my $r = get('/open/page.html', undef, 'open');
like($r, qr/a page/, 'open location');
unlike($r, qr/^(X-WR|Set-Cookie):/mi, 'open location untouched');

$st = status('/status');
is($st->{active_sessions}, 3, 'bad cookies admitted nobody');
is($st->{queue_length}, 27 + 13 + 1, 'bad cookies queued');

# a full queue: 503 and REJECTED

$r = get('/tiny/page.html', undef, 'tiny-in');
is(wr($r), 'ADMITTED', 'tiny room admits one');
my $cap = status('/status/tiny')->{queue_capacity};
ok($cap && $cap >= 64 && $cap <= 4000, 'tiny queue capacity')
	or diag("queue_capacity " . ($cap // 'undef'));
$cap = 0 unless $cap && $cap <= 4000;

my $filled = 0;
for (1 .. $cap) {
	$filled++ if wr(get('/tiny/page.html', undef, 'tiny-q')) eq 'QUEUED';
}
is($filled, $cap, 'queue filled to capacity');

$r = get('/tiny/page.html', undef, 'tiny-full');
is(code($r), 503, 'full: 503');
like($r, qr/waiting room is full/i, 'full: page');
is(wr($r), 'REJECTED', 'full: REJECTED');
ok(!defined cookie($r, 'tiny'), 'full: no cookie');

$st = status('/status/tiny');
is($st->{rejected_full}, 1, 'full: counted');
is($st->{queue_length}, $cap, 'full: queue length');

# the queue holds queue_capacity tickets counted from the oldest one still in
# line: with the first in line waiting all along, others who join and leave
# behind it use up numbers; once the first in line moves on, they are free again

my $in = cookie(get('/span/page.html', undef, 'span-in'), 'span');
ok($in, 'span: one in');
my $head = cookie(get('/span/page.html', undef, 'span-head'), 'span');
$cap = status('/status/span')->{queue_capacity};
$cap = 0 unless $cap && $cap <= 4000;

my ($joined, $left) = (0, 0);
for (1 .. $cap - 1) {
	my $c = cookie(get('/span/page.html', undef, 'span-churn'), 'span');
	next unless $c;
	$joined++;
	$left++ if code(http("POST /_wr_span/leave HTTP/1.0\nHost: localhost\n"
		. "Cookie: $c\nContent-Length: 0\n\n")) == 204;
}
is($joined, $cap - 1, 'span: joined up to the capacity');
is($left, $cap - 1, 'span: and left');

$r = get('/span/page.html', undef, 'span-new');
is(code($r), 503, 'span: the span is full while the first in line waits');
$st = status('/status/span');
ok($st->{queue_length} == 1 && $st->{rejected_full} == 1, 'span: counted');

# the one inside leaves: the first in line is called and comes in

http("POST /_wr_span/leave HTTP/1.0\nHost: localhost\nCookie: $in\n"
	. "Content-Length: 0\n\n");
is(wr(get('/span/page.html', $head)), 'ADMITTED', 'span: first in line in');
$r = get('/span/page.html', undef, 'span-new');
ok(code($r) == 200 && pos_of($r) == 1, 'span: room in line again');

# departures and polls at the same time, on both workers: the 5 slots freed
# go to the first 5 in line, each once

my @race_in = map { cookie(get('/race/page.html', undef, 'race-in'), 'race') }
	1 .. 5;
my @race_q = map { cookie(get('/race/page.html', undef, 'race-q'), 'race') }
	1 .. 20;

my %admitted;
for my $round (1 .. 3) {
	my @socks;
	for my $i (0 .. 19) {
		push @socks, [ 'leave', http_start("POST /_wr_race/leave HTTP/1.0\n"
			. "Host: localhost\nCookie: $race_in[$i / 4]\n"
			. "Content-Length: 0\n\n") ]
			if $round == 1 && $i % 4 == 0;
		push @socks, [ $i, http_start("GET /_wr_race/position HTTP/1.0\n"
			. "Host: localhost\nCookie: $race_q[$i]\n\n") ];
	}
	for my $s (@socks) {
		my $r = defined $s->[1] ? http_end($s->[1]) : '';
		next if $s->[0] eq 'leave';
		$admitted{$s->[0]}++ if defined $r && $r =~ /"state":"admitted"/;
	}
}
is(join(' ', sort { $a <=> $b } keys %admitted), '0 1 2 3 4',
	'race: the first 5 in line let in');
is(join(' ', values %admitted), '1 1 1 1 1', 'race: each once');
$st = status('/status/race');
is("$st->{active_sessions} $st->{queue_length} $st->{called_unclaimed}",
	'5 15 0', 'race: status');

# capacity was enforced across workers: both served requests

my $log = $t->read_file('wr.log');
my %pids = map { $_ => 1 } $log =~ /(\d+)$/mg;
ok(keys %pids >= 2, 'requests served by both workers');

# the variables, in the access log

like($log, qr!^fresh\d+ / 200 ADMITTED - - \d+$!m, 'log: ADMITTED');
like($log, qr!^fresh\d+ / 200 QUEUED \d+ \d+ \d+$!m, 'log: QUEUED');
like($log, qr!^in1 /page.html 200 PASSED - - \d+$!m, 'log: PASSED');
like($log, qr!^again /page.html 200 QUEUED \d+ \d+ \d+$!m, 'log: QUEUED again');
like($log, qr!^tiny-full /tiny/page.html 503 REJECTED - - \d+$!m,
	'log: REJECTED');
like($log, qr!^open /open/page.html 200 - - - \d+$!m, 'log: open');
is(scalar(() = $log =~ /^fresh\d+ \S+ 200 ADMITTED/mg), 3,
	'log: 3 admitted');

# a visitor let in from the queue has waited: $waiting_room_wait

$r = http("POST /_wr/leave HTTP/1.0\nHost: localhost\nCookie: $good\n"
	. "Content-Length: 0\n\n");
like($r, qr/^HTTP\/1\.\d 204/, 'leave');
my $first = (sort { $pos{$a} <=> $pos{$b} } keys %pos)[0];
$r = get('/page.html', $first, 'called');
is(body($r), "a page\n", 'called visitor in');
is(wr($r), 'ADMITTED', 'called visitor ADMITTED');
like($t->read_file('wr.log'),
	qr!^called /page.html 200 ADMITTED - \d+ \d+$!m, 'log: wait');

# nothing went wrong in the log

my $errors = log_errors($t);
is($errors, '', 'no errors logged');

###############################################################################

# the position on the queue page, undef if there is none

sub pos_of {
	my ($r) = @_;
	return defined $r && $r =~ m!<strong id="pos">(\d+)</strong>! ? $1 : undef;
}

sub cookie_line {
	my ($r, $room) = @_;
	return defined $r && $r =~ /^Set-Cookie: (wr_\Q$room\E=[^\x0d\x0a]*)/mi
		? $1 : '';
}

# the first "wr_<room>=" cookie, even an empty one (the shared cookie() skips
# those)

sub cookie {
	my ($r, $room) = @_;
	return cookie_line($r, $room) =~ /^([^;]*)/ && length $1 ? $1 : undef;
}

sub flip {
	my ($s) = @_;
	my $i = int(length($s) / 2);
	substr($s, $i, 1) = substr($s, $i, 1) eq 'A' ? 'B' : 'A';
	return $s;
}

###############################################################################
