#!/usr/bin/perl

# Tests for who goes in, and when, as nginx.conf's waiting_room_zone sets it:
# the admission models (fifo: in the order of arrival; random: anyone waiting,
# the order varies; lottery: an event's pre-queue drawn at the start, later
# comers behind the draw in order), the release rate (admissions counted over
# a steady stream of newcomers), the modes (queue, reject, pass) set in
# nginx.conf and then switched from the control location, an event that is
# over, the variables and status fields that show them, and the values
# nginx -t refuses.  The control location itself is t/19-live-control.t.

###############################################################################

use warnings;
use strict;

use Test::More;
use POSIX qw/ strftime /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ req get first api code body wr pos_of cookie
	cookie_kind json conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http access/)->plan(90);

my @rooms = qw/ f r1 r2 r3 r4 r5 l1 l2 rt q x p o /;

$t->write_file('secret.key', 'k' x 40 . "\n");
for my $room (@rooms, 'x503', 'o503') {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p.html", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

###############################################################################

# what nginx -t refuses, and what it takes

my @bad = (
	['model=x', 'invalid model value "x"'],
	['model=FIFO', 'invalid model value "FIFO"'],
	['rate=x', 'invalid rate value "x"'],
	['rate=10', 'invalid rate value "10"'],
	['rate=0r/m', 'invalid rate value "0r/m"'],
	['mode=x', 'invalid mode value "x"'],
	['mode=off', 'invalid mode value "off"'],
	['start=x',
		'invalid start value "x", a time in UTC like 2026-11-27T09:00:00Z'],
	['start=2026-11-27T09:00:00+01:00',
		'invalid start value "2026-11-27T09:00:00+01:00", a time in UTC'],
	['end=2026-11-27', 'invalid end value "2026-11-27", a time in UTC'],
	['start=2026-11-27T10:00:00Z end=2026-11-27T09:00:00Z',
		'"end" must be after "start"'],
	['start=2026-11-27T10:00:00Z end=2026-11-27T10:00:00Z',
		'"end" must be after "start"'],
);
for my $case (@bad) {
	my ($param, $want) = @$case;
	my ($ok, $out) = conf_test($t,
		"waiting_room_zone zone=z:1m max_active=5 $param;");
	ok(!$ok && index($out, $want) >= 0, "nginx -t refuses $param")
		or diag($out);
}
my ($ok, $out) = conf_test($t, 'waiting_room_zone zone=z:1m max_active=5 '
	. 'model=lottery rate=2r/s mode=queue start=2026-11-27T09:00:00Z '
	. 'end=2036-11-27T18:00:00Z;');
ok($ok, 'nginx -t takes all six settings') or diag($out);

###############################################################################

# the event's start, for the lottery rooms: a few seconds from now

my $start = int(time()) + 4;
my $start_text = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($start));

my %zone = (
	f => 'max_active=1',
	r1 => 'max_active=1 model=random',
	r2 => 'max_active=1 model=random',
	r3 => 'max_active=1 model=random',
	r4 => 'max_active=1 model=random',
	r5 => 'max_active=1 model=random',
	l1 => "max_active=2 model=lottery start=$start_text",
	l2 => "max_active=2 model=lottery start=$start_text",
	rt => 'max_active=100 rate=120r/m',
	q => 'max_active=2 mode=queue',
	x => 'max_active=1 mode=reject',
	p => 'max_active=1 mode=pass',
	o => 'max_active=5 end=2020-01-01T00:00:00Z',
);

my ($zones, $locations) = ('', '');
for my $room (@rooms) {
	$zones .= "    waiting_room_zone zone=$room:1m $zone{$room};\n";
	# (x and o: below, with their closed status)
	$locations .= "        location /$room/ { waiting_room $room api=/$room/_wr/; }\n"
		unless $room eq 'x' || $room eq 'o';
	$locations .= <<"EOF";
        location /$room/_wr/ { waiting_room_api $room; }
        location = /$room/status { waiting_room_status $room; }
        location = /$room/control {
            allow 127.0.0.1;
            deny all;
            waiting_room_control $room;
        }
EOF
}

$t->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
$zones
    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        add_header X-WR \$waiting_room_status always;
        add_header X-Phase \$waiting_room_phase always;
        add_header X-Mode \$waiting_room_mode always;
        add_header X-Model \$waiting_room_model always;
        add_header X-Rate \$waiting_room_rate always;

$locations
        location /x/ {
            waiting_room x api=/x/_wr/;
            waiting_room_closed_status 410;
        }
        location /x503/ { waiting_room x api=/x/_wr/; }

        location /o/ {
            waiting_room o api=/o/_wr/;
            waiting_room_closed_status 404;
        }
        location /o503/ { waiting_room o api=/o/_wr/; }
    }
}

EOF

$t->run();

###############################################################################

# lottery, first, while its start is ahead: everyone who comes waits, with
# slots free; each gets a ticket and the queue page with a countdown

my (%early, %late);
for my $room (qw/ l1 l2 /) {
	$early{$room} = [ map { (visit($room))[0] } 1 .. 6 ];
}
my @r = map { get('/l1/p.html', $_) } @{$early{l1}}[0, 5];
ok(!grep({ !(code($_) == 200 && wr($_) eq 'QUEUED') } @r),
	'lottery before the start: the queue page, 200, to those waiting');
ok(!grep({ !defined $_ || cookie_kind($_) != 1 } @{$early{l1}}),
	'lottery before the start: each has a ticket');
like($r[1], qr!<div id="bs"\s*>.*Opens in <strong id="sn"[^>]*>\d\d:\d\d<!s,
	'lottery before the start: the countdown shows');
like($r[1], qr/^X-Phase: before\x0d?$/m, 'lottery before the start: phase before');
my $p = json(api('GET', 'position', $early{l1}[2], '/l1/_wr/'));
ok($p->{state} eq 'queued' && defined $p->{starts_in} && $p->{starts_in} > 0
	&& $p->{starts_in} <= 5, 'lottery before the start: starts_in')
	or diag(explain($p));
is($p->{draw}, 6, 'lottery before the start: to be drawn among the 6');
my $st = json(http_get('/l1/status'));
is(join(' ', map { $st->{$_} // 'null' }
	qw/ active_sessions called_unclaimed queue_length phase model start /),
	"0 0 6 before lottery $start_text",
	'lottery before the start: nobody in, two slots free');

# the start: the draw; those who come after it queue behind the 6 drawn

select undef, undef, undef, 0.1 while time() < $start + 1.3;

for my $room (qw/ l1 l2 /) {
	$late{$room} = [ map { (visit($room))[0] } 1 .. 3 ];
}
my $r = get('/l1/p.html');
like($r, qr/^X-Phase: open\x0d?$/m, 'lottery after the start: phase open');
api('POST', 'leave', cookie($r, 'l1'), '/l1/_wr/');

my (%order, %rounds);
for my $room (qw/ l1 l2 /) {
	my @line = (@{$early{$room}}, @{$late{$room}});
	my $api = "/$room/_wr/";

	# the first asks: the two called at the draw come in, both drawn

	my (%done, @in);
	my @first = poll_round($room, \@line, \%done, \@in);
	my @lp = map { json(api('GET', 'position', $_, $api)) } @{$late{$room}};
	my @dp = map { json(api('GET', 'position', $line[$_], $api)) }
		grep { !$done{$_} } 0 .. 5;

	if ($room eq 'l1') {
		is(join(' ', map { $_ < 6 ? 'drawn' : 'late' } @first),
			'drawn drawn', 'lottery: the two called at the start are drawn');
		is(join(' ', map { "$_->{position}/$_->{draw}" } @lp), '5/0 6/0 7/0',
			'lottery: those after the draw have fixed places behind it');
		ok(!grep({ !($_->{state} eq 'queued' && $_->{draw} == 4
			&& $_->{position} == 4) } @dp),
			'lottery: the drawn ones waiting, drawn among 4')
			or diag(explain(\@dp));
		is(json(http_get('/l1/status'))->{in_draw}, 4, 'lottery: in_draw');
	}

	my @rest = serve($room, \@line, \%done, \@in);
	$rounds{$room} = [ [@first], @rest ];
	$order{$room} = [ @first, map { @$_ } @rest ];
}
for my $room (qw/ l1 l2 /) {
	my @o = @{$order{$room}};
	is(join(' ', sort { $a <=> $b } @o[0 .. 5]), '0 1 2 3 4 5',
		"lottery $room: all the drawn ones before anyone after the draw");
	is(join(' ', @o[6 .. 8]), '6 7 8',
		"lottery $room: then those after the draw, in their order");
	ok(!grep({ @$_ != 1 } @{$rounds{$room}}[1 .. $#{$rounds{$room}}]),
		"lottery $room: one in for each one out");
	note("lottery $room: order @o");
}
ok("@{$order{l1}}[0 .. 5]" ne '0 1 2 3 4 5'
	|| "@{$order{l2}}[0 .. 5]" ne '0 1 2 3 4 5',
	'lottery: the draw is no first-come order');

###############################################################################

# fifo, the default: A, B, C in line get in in that order as the one inside
# leaves; each round, the later comers ask first

my ($in, $kind) = visit('f');
is($kind, 'ADMITTED', 'fifo: the first one in');
my @line;
my @pos;
for (1 .. 3) {
	my ($c, $k, $resp) = visit('f');
	push @line, $c;
	push @pos, "$k " . pos_of($resp);
}
is("@pos", 'QUEUED 1 QUEUED 2 QUEUED 3', 'fifo: A, B, C queued in order');
$p = json(api('GET', 'position', $line[2], '/f/_wr/'));
ok($p->{position} == 3 && $p->{draw} == 0 && !defined $p->{eta_max_seconds},
	'fifo: a fixed place, no draw') or diag(explain($p));
is(join(' ', grep { !exists $p->{$_} } qw/ state position eta_seconds
	eta_max_seconds draw starts_in queue_length refresh_seconds /), '',
	'position: all the fields');
my @rounds = serve('f', \@line, {}, [$in]);
is(join(' ', map { @$_ } @rounds), '0 1 2', 'fifo: A, B, C in, in that order');
ok(!grep({ @$_ != 1 } @rounds), 'fifo: one in for each one out');

###############################################################################

# random: anyone waiting is called, each as likely: in 4 rooms of one slot, 6
# in line each; the first-come order in all 4 has a chance of 1 in 2.7e11

my (%rline, %rin);
for my $room (qw/ r1 r2 r3 r4 /) {
	($rin{$room}) = visit($room);
	$rline{$room} = [ map { (visit($room))[0] } 1 .. 6 ];
}
my @pj = map { json(api('GET', 'position', $_, '/r1/_wr/')) } @{$rline{r1}};
ok(!grep({ !($_->{state} eq 'queued' && $_->{draw} == 6) } @pj),
	'random: each turn is drawn among the 6 waiting') or diag(explain(\@pj));
ok(!grep({ $_->{position} != 6 } @pj),
	'random: position, the last place the turn may come at');
ok(!grep({ !defined $_->{eta_max_seconds}
	|| $_->{eta_max_seconds} < ($_->{eta_seconds} // 0) } @pj),
	'random: a longest wait, not below the expected one');
$r = get('/r1/p.html', $rline{r1}[0]);
like($r, qr!<div id="bd"\s*>.*<strong id="dn">6</strong>!s,
	'random: the page says among how many');
like($r, qr/^X-Model: random\x0d?$/m, 'random: $waiting_room_model');
is(json(http_get('/r1/status'))->{in_draw}, 6, 'random: in_draw in the status');

my (@orders, $bad_rounds);
for my $room (qw/ r1 r2 r3 r4 /) {
	my @rr = serve($room, $rline{$room}, {}, [$rin{$room}]);
	$bad_rounds++ if grep { @$_ != 1 } @rr;
	push @orders, join ' ', map { @$_ } @rr;
}
note("random orders: " . join(', ', @orders));
ok(!grep({ join(' ', sort split ' ', $_) ne '0 1 2 3 4 5' } @orders),
	'random: everyone in');
ok(!$bad_rounds, 'random: one in for each one out');
ok(grep({ $_ ne '0 1 2 3 4 5' } @orders), 'random: not the first-come order');
my %distinct = map { $_ => 1 } @orders;
ok(keys %distinct > 1, 'random: no fixed order');

# and each waiting visitor as likely: 4 in line, 60 calls, each the rank
# among those waiting (0 the first come) of the one called, who then leaves
# and a newcomer joins the end; each rank comes 15 times on average, fewer
# than 3 times once in 30000 runs

my @wait = map { (visit('r5'))[0] } 0 .. 4;
my $inside = shift @wait;
my @ranks = (0) x 4;
CALL: for (1 .. 60) {
	api('POST', 'leave', $inside, '/r5/_wr/');
	for (1 .. 20) {
		for my $k (0 .. $#wait) {
			my $x = api('GET', 'position', $wait[$k], '/r5/_wr/');
			next unless json($x)->{state} eq 'admitted';
			$ranks[$k]++;
			$inside = cookie($x, 'r5');
			splice @wait, $k, 1;
			push @wait, (visit('r5'))[0];
			next CALL;
		}
		select undef, undef, undef, 0.05;
	}
	last;
}
my $calls = 0;
$calls += $_ for @ranks;
note("random: ranks called among 4, over $calls calls: @ranks");
ok($calls == 60 && !grep({ $_ < 3 } @ranks),
	'random: any of those waiting, as likely');

###############################################################################

# rate=120r/m: 2 at once, then 2 a second, with 100 slots free: a newcomer
# every 0.1 s for 6 s, and those in line ask each time

my (@waiting, $seen, $direct);
my $t0 = time();
while (time() - $t0 < 6) {
	my ($c, $k) = visit('rt');
	if ($k eq 'ADMITTED') {
		$seen++;
		$direct++;
	} else {
		push @waiting, $c;
	}
	@waiting = grep {
		my $s = json(api('GET', 'position', $_, '/rt/_wr/'))->{state};
		$seen++ if $s eq 'admitted';
		$s ne 'admitted';
	} @waiting;
	select undef, undef, undef, 0.1;
}
$st = json(http_get('/rt/status'));
my $elapsed = time() - $t0;
my $counted = $st->{admitted_total} + $st->{called_unclaimed};
note(sprintf('rate 120r/m: %d admissions in %.2f s, %.1f a minute '
	. '(%d seen let in, %d of them at once; %d waiting)', $counted, $elapsed,
	60 * $counted / $elapsed, $seen // 0, $direct // 0, scalar @waiting));
ok($counted <= 2 + 2 * $elapsed + 1, 'rate: no more admissions than the rate');
ok($counted >= 2 * $elapsed - 2, 'rate: about as many as the rate allows');
ok(($seen // 0) >= $counted - 2, 'rate: those counted got in');
ok(@waiting >= 10, 'rate: the rest wait, with slots free');
is($st->{rate}, '120r/m', 'rate: in the status');
like(http_get('/rt/p.html'), qr/^X-Rate: 120r\/m\x0d?$/m, 'rate: $waiting_room_rate');

###############################################################################

# mode=queue: everyone new waits, with both slots free; nobody is called

$r = first('/q/p.html');
ok(wr($r) eq 'ARRIVED' && $r =~ /^X-Mode: queue\x0d?$/m,
	'queue: a newcomer is sent to the line');
my @q = map { (visit('q'))[0] } 1 .. 2;
$st = json(http_get('/q/status'));
is("$st->{active_sessions} $st->{queue_length} $st->{mode}", '0 2 queue',
	'queue: two in line, nobody in');
select undef, undef, undef, 1.3;
$p = json(api('GET', 'position', $q[0], '/q/_wr/'));
ok($p->{state} eq 'queued' && $p->{position} == 1 && !defined $p->{eta_seconds},
	'queue: after a sweep, still held, no estimate') or diag(explain($p));

# switched to normal: the two are called; then back to queue: the one
# inside goes on, a freed slot calls nobody, a newcomer waits

control('q', '{"mode": "normal"}');
my @qin = map { cookie(api('GET', 'position', $_, '/q/_wr/'), 'q') } @q;
ok(!grep({ !defined } @qin), 'queue -> normal: the line is called');
my ($q3) = visit('q');
control('q', '{"mode": "queue"}');
api('POST', 'leave', $qin[0], '/q/_wr/');
$r = get('/q/p.html', $qin[1]);
ok(wr($r) eq 'PASSED' && $r =~ /ORIGIN q/, 'normal -> queue: the one inside goes on');
my (undef, $k4) = visit('q');
select undef, undef, undef, 1.3;
$p = json(api('GET', 'position', $q3, '/q/_wr/'));
ok($p->{state} eq 'queued' && $k4 eq 'QUEUED',
	'normal -> queue: a slot free, nobody called, a newcomer waits')
	or diag(explain($p));
control('q', '{"mode": "normal"}');
is(json(api('GET', 'position', $q3, '/q/_wr/'))->{state}, 'admitted',
	'queue -> normal: called again');

###############################################################################

# mode=reject: newcomers get the "closed" page, with the location's status

$r = first('/x/p.html');
ok(code($r) == 410 && wr($r) eq 'CLOSED' && $r =~ /Closed for now/
	&& !cookie($r, 'x') && $r =~ /^X-Mode: reject\x0d?$/m,
	'reject: the closed page, 410, no cookie');
like($r, qr/^Retry-After: \d+\x0d?$/m, 'reject: Retry-After');
$r = first('/x503/p.html');
ok(code($r) == 503 && wr($r) eq 'CLOSED', 'reject: 503 where not set');
is(code(first('/x/p.html', undef, 'html')), 410, 'reject: every newcomer');

# from the control location: normal, one in and one in line; reject again:
# the ticket holder keeps the place, and gets in when the slot frees

control('x', '{"mode": "normal"}');
my ($xa, $xka) = visit('x');
my ($xb, $xkb) = visit('x');
is("$xka $xkb", 'ADMITTED QUEUED', 'reject -> normal: one in, one in line');
my $xarr = cookie(first('/x/p.html'), 'x');
control('x', '{"mode": "reject"}');
$r = first('/x/p.html');
ok(code($r) == 410 && wr($r) eq 'CLOSED', 'normal -> reject: a newcomer closed');
$r = get('/x/p.html', $xb);
ok(code($r) == 200 && wr($r) eq 'QUEUED' && pos_of($r) == 1,
	'normal -> reject: the one in line keeps the place');
like(get('/x/p.html', $xa), qr/^X-WR: PASSED/m, 'normal -> reject: the one inside stays');
api('POST', 'leave', $xa, '/x/_wr/');
$r = api('GET', 'position', $xb, '/x/_wr/');
ok(json($r)->{state} eq 'admitted' && cookie($r, 'x'),
	'reject: the ticket holder gets in when the slot frees');
$st = json(http_get('/x/status'));
is("$st->{mode} $st->{turned_away}", 'reject 4', 'reject: the status counts those turned away');

# a first contact sent to the line before the room closed: closed when it
# comes back

$r = api('GET', 'position', $xarr, '/x/_wr/');
ok(cookie_kind($xarr) == 3 && code($r) == 503 && json($r)->{state} eq 'closed',
	'reject: an arrival asks, 503 closed') or diag($r);
$r = get('/x/p.html', $xarr);
ok(code($r) == 410 && wr($r) eq 'CLOSED', 'reject: an arrival comes back, closed');

###############################################################################

# mode=pass: the room is off; a newcomer gets a session while a slot is free,
# after that goes through without a place; a ticket holder goes through

my ($pa, $pka, $pr) = visit('p');
ok($pka eq 'ADMITTED' && cookie_kind($pa) == 2 && $pr =~ /ORIGIN p/
	&& $pr =~ /^X-Mode: pass\x0d?$/m, 'pass: in with a session while a slot is free');
my $off = 0;
$r = first('/p/p.html');
$off++ if wr($r) eq 'OFF';
ok(wr($r) eq 'OFF' && $r =~ /ORIGIN p/ && !cookie($r, 'p'),
	'pass: full, through to the origin without a place');

control('p', '{"mode": "normal"}');
my ($pc, $pkc) = visit('p');
is($pkc, 'QUEUED', 'pass -> normal: a newcomer waits');
control('p', '{"mode": "pass"}');
# (keeping the place: not counted as passed without one)
$r = get('/p/p.html', $pc);
ok($r =~ /ORIGIN p/ && wr($r) eq 'OFF', 'normal -> pass: a ticket holder goes through');
$r = api('GET', 'position', $pc, '/p/_wr/');
ok(code($r) == 200 && json($r)->{state} eq 'open', 'normal -> pass: position says open');
$r = first('/p/p.html');
$off++ if wr($r) eq 'OFF';
is(wr($r), 'OFF', 'normal -> pass: newcomers through again');
$st = json(http_get('/p/status'));
is(join(' ', @$st{qw/ mode active_sessions queue_length passed_off /}),
	"pass 1 1 $off", 'pass: the status counts the newcomers passed');

control('p', '{"mode": "normal"}');
my (undef, $pkd, $pd) = visit('p');
ok($pkd eq 'QUEUED' && $pd =~ /^X-Mode: normal\x0d?$/m,
	'pass -> normal: the room is on again');

###############################################################################

# end= in the past: newcomers get the "event over" page, with the status
# the location sets

$r = first('/o/p.html');
ok(code($r) == 404 && wr($r) eq 'OVER' && $r =~ /The event is over/
	&& !cookie($r, 'o'), 'over: the over page, 404, no cookie');
like($r, qr/^X-Phase: over\x0d?$/m, 'over: $waiting_room_phase');
$r = first('/o503/p.html');
ok(code($r) == 503 && wr($r) eq 'OVER', 'over: 503 where not set');
$st = json(http_get('/o/status'));
is(join(' ', map { $_ // 'null' } @$st{qw/ phase end active_sessions turned_away /}),
	'over 2020-01-01T00:00:00Z 0 2', 'over: the status');
is(join(' ', grep { !exists $st->{$_} } qw/ model mode rate phase start end
	in_draw turned_away passed_off control_changes /), '', 'status: all the new fields');

# a first contact sent to the line (mode queue) before the event ended:
# "over" when it comes back

control('o', '{"end": null, "mode": "queue"}');
my @oarr = map { cookie(first('/o/p.html'), 'o') } 1 .. 2;
control('o', '{"end": "2020-01-01T00:00:00Z", "mode": "normal"}');
$r = api('GET', 'position', $oarr[0], '/o/_wr/');
ok(cookie_kind($oarr[0]) == 3 && code($r) == 503 && json($r)->{state} eq 'over',
	'over: an arrival asks, 503 over') or diag($r);
$r = get('/o/p.html', $oarr[1]);
ok(code($r) == 404 && wr($r) eq 'OVER', 'over: an arrival comes back, the over page')
	or diag($r);
$st = json(http_get('/o/status'));
is("$st->{active_sessions} $st->{queue_length}", '0 0', 'over: nobody new in, or in line');

###############################################################################

# a visitor of $room: cookie, $waiting_room_status, the answer

sub visit {
	my ($room) = @_;
	my $r = get("/$room/p.html");
	return (cookie($r, $room), wr($r), $r);
}

sub control {
	my ($room, $json) = @_;
	my $r = http("POST /$room/control HTTP/1.0\nHost: localhost\n"
		. "Content-Type: application/json\n"
		. 'Content-Length: ' . length($json) . "\n\n$json");
	die "control $room $json: " . ($r // 'no answer') unless code($r) == 200;
	return json($r);
}

# everyone of @$line not %$done asks, the last comer first: those let in are
# done, their session cookies put on @$in; the indexes let in

sub poll_round {
	my ($room, $line, $done, $in) = @_;
	my @got;
	for my $i (reverse 0 .. $#$line) {
		next if $done->{$i};
		my $r = api('GET', 'position', $line->[$i], "/$room/_wr/");
		next unless json($r)->{state} eq 'admitted';
		$done->{$i} = 1;
		push @got, $i;
		push @$in, cookie($r, $room);
	}
	return @got;
}

# one of @$in leaves at a time; those in line ask until one is let in: the
# rounds, each the indexes let in after one left; everyone leaves at the end

sub serve {
	my ($room, $line, $done, $in) = @_;
	my @rounds;
	for (1 .. @$line) {
		last if keys %$done == @$line;
		api('POST', 'leave', shift @$in, "/$room/_wr/") if @$in;
		my @got;
		for (1 .. 20) {
			@got = poll_round($room, $line, $done, $in);
			last if @got;
			select undef, undef, undef, 0.05;
		}
		last unless @got;
		push @rounds, [ @got ];
	}
	api('POST', 'leave', $_, "/$room/_wr/") for @$in;
	@$in = ();
	return @rounds;
}

###############################################################################
