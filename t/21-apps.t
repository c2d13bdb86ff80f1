#!/usr/bin/perl

# Tests for apps: a request to a protected URL whose Accept prefers JSON gets
# a JSON answer with the page's status, and can join the line, poll and be
# admitted without a browser (the README's curl walk-through, step by step).

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http /;
use Test::Nginx::WaitingRoom qw/ get api code body wr cookie json req /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(22);

$t->write_file('secret.key', 's' x 40);
for my $room (qw/ a f x /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=a:1m max_active=1 client_limit=2;
    waiting_room_zone zone=f:1m max_active=1;
    waiting_room_zone zone=x:1m max_active=5 mode=reject;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /a/ {
            waiting_room a;
            waiting_room_queue_status 202;
        }
        location /_wr/ { waiting_room_api a; }
        location /f/ { waiting_room f api=/f/_wr/; }
        location /f/_wr/ { waiting_room_api f; }
        location /x/ { waiting_room x api=/x/_wr/; }
        location /x/_wr/ { waiting_room_api x; }
    }
}

EOF

$t->run();

###############################################################################

# someone inside: the room is full

my $in = cookie(get('/a/p'), 'a');
ok($in, 'a browser inside');

# 1. the app asks for the page, and gets JSON: a first contact, with a cookie
# to come back with at once

my $r = app('/a/p');
my $j = json($r);
is(code($r), 202, 'arrived: the queue page\'s status');
like($r, qr!^Content-Type: application/json\s*$!m, 'arrived: JSON');
like($r, qr/^Vary: Accept\s*$/m, 'arrived: Vary');
like($r, qr/^Retry-After: 0\s*$/m, 'arrived: back at once');
ok($j->{state} eq 'arrived' && $j->{position} == 1
	&& $j->{api}{position} eq '/_wr/position'
	&& $j->{api}{heartbeat} eq '/_wr/heartbeat'
	&& $j->{api}{leave} eq '/_wr/leave', 'arrived: the place and the API')
	or diag(explain($j));
my $jar = cookie($r, 'a');

# 2. back with the cookie: a place in line, and the ticket

$r = app('/a/p', $jar);
$j = json($r);
ok(code($r) == 202 && $j->{state} eq 'queued' && $j->{position} == 1
	&& $j->{queue_length} == 1 && $j->{refresh_seconds} >= 1,
	'queued: the place') or diag(explain($j));
is(wr($r), 'QUEUED', 'queued: $waiting_room_status');
$jar = cookie($r, 'a');
ok($jar, 'queued: the ticket');

# 3. polls the API, as the answer says

$j = json(api('GET', 'position', $jar));
is($j->{state}, 'queued', 'polls: queued');

# 4. the one inside leaves; the next poll admits the app

api('POST', 'leave', $in);
$r = api('GET', 'position', $jar);
$j = json($r);
is($j->{state}, 'admitted', 'polls: admitted');
my $session = cookie($r, 'a');
ok($session, 'polls: the session cookie');

# 5. with the session, the protected URL answers as usual

$r = app('/a/p', $session);
ok(code($r) == 200 && body($r) eq "ORIGIN a\n" && wr($r) eq 'PASSED',
	'in: the origin answers');

# over client_limit: 429 in JSON (two more places from this address)

my $second = cookie(app('/a/p', cookie(app('/a/p'), 'a')), 'a');
my $third = cookie(app('/a/p', cookie(app('/a/p'), 'a')), 'a');
$r = app('/a/p', cookie(app('/a/p'), 'a'));
$j = json($r);
ok(code($r) == 429 && $j->{state} eq 'limited', 'limited: 429 in JSON')
	or diag(explain($j));

# closed: the closed page's status in JSON

$r = app('/x/p');
$j = json($r);
ok(code($r) == 503 && $j->{state} eq 'closed' && wr($r) eq 'CLOSED',
	'closed: 503 in JSON') or diag(explain($j));

# a crawler asking for JSON is refused, in JSON

$r = http(app_req('/a/p') =~ s/\n\n$/\nUser-Agent: Googlebot\/2.1\n\n/r);
$j = json($r);
ok(code($r) == 503 && $j->{state} eq 'refused' && wr($r) eq 'REFUSED',
	'crawler: refused in JSON') or diag(explain($j));

# a browser still gets the page, and a fetch of a page's that asks for
# anything gets the short refusal

get('/f/p');
$r = get('/f/p');
ok(code($r) == 200 && $r =~ /<html/ && $r =~ /^Vary: Accept, Accept-Language\s*$/m,
	'a browser: the page, Vary');
$r = http("GET /a/p HTTP/1.0\nHost: localhost\nAccept: */*\n\n");
ok(code($r) == 503 && $r =~ m!^Content-Type: text/plain!m,
	'*/*: the short refusal');

# HTML preferred to JSON: the page

$r = http(req('/f/p') =~ s/^Accept: [^\n]*\n/Accept: application\/json;q=0.5, text\/html\n/mr);
like($r, qr/<html/, 'JSON less wanted than HTML: the page');

# a POST from an app: its body is read and dropped, the answer is JSON

$r = http("POST /a/p HTTP/1.0\nHost: localhost\nAccept: application/json\n"
	. "Content-Type: application/json\nContent-Length: 9\n\n{\"x\": 1}\n");
$j = json($r);
ok(code($r) == 202 && $j->{state} eq 'arrived', 'POST: JSON')
	or diag(explain($j));

# HEAD is no join, and gets no JSON body

$r = http("HEAD /a/p HTTP/1.0\nHost: localhost\nAccept: application/json\n\n");
ok(code($r) == 503 && body($r) eq '', 'HEAD: the short refusal, no body');

$t->stop();

like($t->read_file('access.log'), qr/POST \/a\/p/, 'POST logged');

###############################################################################

sub app_req {
	my ($uri, $cookie) = @_;
	my $c = defined $cookie ? "Cookie: $cookie\n" : '';
	return "GET $uri HTTP/1.0\nHost: localhost\nAccept: application/json\n$c\n";
}

sub app {
	return http(app_req(@_));
}

###############################################################################
