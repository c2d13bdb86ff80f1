package Test::Nginx;

# Our own implementation of the part of the nginx-tests harness API
# (nginx/nginx-tests, lib/Test/Nginx.pm) that this project's tests use.
# Semantics follow upstream so that a .t file runs unchanged with either
# harness in t/lib; the only deviations are extra, bounded waiting.

use warnings;
use strict;

use base qw/ Exporter /;

our @EXPORT = qw/ log_in log_out http http_get http_head port /;
our @EXPORT_OK = qw/ http_start http_end http_content /;

use File::Basename qw/ dirname /;
use File::Glob qw/ bsd_glob /;
use File::Path qw/ rmtree /;
use File::Spec;
use File::Temp qw/ tempdir /;
use IO::Socket;
use POSIX qw/ WNOHANG /;
use Test::More qw//;

# Test::Builder takes $TODO from the package calling is(): the final
# "no alerts" check is made from here.
our $TODO;

# Ports handed out by port(), shared by all instances as upstream does.
our %ports;

# Default binary: the nginx that nginx-sys built for this repository
# (repository root = parent of t/, found from this file, else the cwd).
sub _default_binary {
	my $root = dirname(dirname(dirname(dirname(
		File::Spec->rel2abs(__FILE__)))));
	for my $base ($root, File::Spec->rel2abs('.')) {
		for my $profile (qw/ release debug /) {
			my @found = sort { -M $a <=> -M $b } grep { -x } bsd_glob(
				"$base/target/$profile/build/nginx-sys-*/out/objs/nginx");
			return $found[0] if @found;
		}
	}
	return "$root/target/{release,debug}/build/nginx-sys-*/out/objs/nginx";
}

our $NGINX = defined $ENV{TEST_NGINX_BINARY}
	? $ENV{TEST_NGINX_BINARY} : _default_binary();

sub new {
	my ($class) = @_;
	my $self = bless { _pid => $$, _alerts => 1 }, $class;
	$self->{_testdir} = tempdir('nginx-test-XXXXXXXXXX', TMPDIR => 1)
		or die "Can't create temp directory: $!\n";
	Test::More::BAIL_OUT("no $NGINX binary found") unless -x $NGINX;
	return $self;
}

# Final checks and cleanup happen when the test's $t is destroyed; for a
# file-scoped lexical that is before Test::Builder's END-time plan check.
sub DESTROY {
	my ($self) = @_;
	local ($?, $@);

	# forked daemons (run_daemon) share the object but must not clean up
	return if $self->{_pid} != $$;

	$self->stop();
	$self->stop_daemons();

	my $log = eval { $self->read_file('error.log') };
	$log = '' unless defined $log;

	if (Test::More->builder->expected_tests) {
		local $TODO = 'alerts' unless $self->{_alerts};
		my @alerts = grep { /.\[alert\]./ } split /\n/, $log;
		Test::More::is(join("\n", @alerts), '', 'no alerts');
	}
	if (Test::More->builder->expected_tests) {
		local $TODO;
		my @san = grep { /.Sanitizer./ } split /\n/, $log;
		Test::More::is(join("\n", @san), '', 'no sanitizer errors');
	}

	print $log if $ENV{TEST_NGINX_CATLOG};
	if ($ENV{TEST_NGINX_LEAVE}) {
		Test::More::diag("test directory left: $self->{_testdir}");
	} else {
		eval { rmtree($self->{_testdir}); };
	}
}

###############################################################################

# Skip the whole file unless every named module/feature is available.
sub has {
	my ($self, @features) = @_;
	for my $f (@features) {
		Test::More::plan(skip_all => "no $f available")
			unless $self->has_module($f) or $self->has_feature($f);
	}
	return $self;
}

sub _configure_args {
	my ($self) = @_;
	$self->{_configure_args} = `$NGINX -V 2>&1`
		unless defined $self->{_configure_args};
	return $self->{_configure_args};
}

# Modules built unless configure got the --without-... option matched here;
# modules that need an explicit --with-...; any other name is used as a
# regex against the nginx -V output.
my %WITHOUT = (http => '--without-http(?!\S)',
	cache => '--without-http-cache', pcre => '--without-pcre');
$WITHOUT{$_} = "--without-http_${_}(?:_module|(?!\\S))" for qw/ charset
	gzip ssi mirror userid access auth_basic autoindex geo map referer
	rewrite proxy fastcgi uwsgi scgi grpc memcached limit_conn limit_req
	empty_gif browser split_clients upstream_hash upstream_ip_hash
	upstream_least_conn upstream_least_time upstream_random
	upstream_keepalive upstream_zone upstream_sticky tunnel /;
$WITHOUT{"stream_$_"} = "--without-stream_${_}_module" for qw/ access geo
	limit_conn map pass return set split_clients upstream_hash
	upstream_least_conn upstream_least_time upstream_random upstream_zone /;
$WITHOUT{$_} = "--without-mail_${_}_module" for qw/ pop3 imap smtp /;

my %WITH = (sni => 'TLS SNI support enabled',
	stream_ssl => '--with-stream_ssl_module');
$WITH{$_} = "--with-http_${_}_module" for qw/ flv perl auth_request realip
	sub /;
$WITH{$_} = "--with-$_(?:(?!\\S)|=dynamic)" for qw/ mail stream /;

# Dynamic modules also count as present when TEST_NGINX_GLOBALS loads them.
my %DYNAMIC = (http_geoip => 'ngx_http_geoip_module',
	image_filter => 'ngx_http_image_filter_module',
	perl => 'ngx_http_perl_module', xslt => 'ngx_http_xslt_filter_module',
	mail => 'ngx_mail_module', stream => 'ngx_stream_module',
	stream_geoip => 'ngx_stream_geoip_module');

sub has_module {
	my ($self, $f) = @_;
	my $args = $self->_configure_args();

	return $args =~ /$WITHOUT{$f}/ ? 0 : 1 if $WITHOUT{$f};
	return 1 if $args =~ (defined $WITH{$f} ? qr/$WITH{$f}/ : qr/$f/);

	my $so = $DYNAMIC{$f};
	return 1 if $so && ($ENV{TEST_NGINX_GLOBALS} || '')
		=~ /load_module\s+[^;]*\Q$so\E[-\w]*\.so\s*;/;
	return 0;
}

# Only the platform features; SSL/crypto library checks are not supported.
sub has_feature {
	my ($self, $f) = @_;
	return $f =~ /^(?:symlink|unix|udp)$/ && $^O ne 'MSWin32' ? 1 : 0;
}

sub has_version {
	my ($self, $need) = @_;
	my ($v) = $self->_configure_args() =~ m!nginx version: nginx/([0-9.]+)!;
	my @have = split /\./, $v || '';
	for my $n (split /\./, $need) {
		my $h = shift @have || 0;
		return $h > $n ? 1 : 0 if $h != $n;
	}
	return 1;
}

sub has_daemon {
	my ($self, $daemon) = @_;
	Test::More::plan(skip_all => "$daemon not found")
		unless `which $daemon 2>/dev/null`;
	return $self;
}

# The two extra tests are the "no alerts" and "no sanitizer errors" checks
# made at DESTROY.
sub plan {
	my ($self, $n) = @_;
	Test::More::plan(tests => $n + 2);
	return $self;
}

sub todo_alerts {
	my ($self) = @_;
	$self->{_alerts} = 0;
	return $self;
}

###############################################################################

# Without %%TEST_GLOBALS%% in the config, the pid file and the error log
# still go to the test directory, through -g.
sub _globals_args {
	my ($self) = @_;
	my $d = $self->{_testdir};
	return () if $self->{_test_globals};
	return ('-g', "pid $d/nginx.pid; error_log $d/error.log debug;");
}

# run(), but a failure to start skips the whole file.
sub try_run {
	my ($self, $message) = @_;

	open my $saved, '>&', \*STDERR or die "Can't dup STDERR: $!";
	open STDERR, '>', File::Spec->devnull();
	my $ok = eval { $self->run(); 1 };
	open STDERR, '>&', $saved;
	return $self if $ok;

	log_core(eval { $self->read_file('error.log') });
	Test::More::plan(skip_all => $message);
	return $self;
}

sub run {
	my ($self, $conf) = @_;
	my $d = $self->{_testdir};

	if (defined $conf) {
		open my $fh, '<', $conf or die "Can't open $conf: $!";
		local $/;
		$self->write_file_expand('nginx.conf', scalar <$fh>);
	}

	my $pid = fork();
	die "Unable to fork(): $!\n" unless defined $pid;
	if ($pid == 0) {
		{ exec($NGINX, '-p', "$d/", '-c', 'nginx.conf', '-e', 'error.log',
			$self->_globals_args()); }
		print STDERR "Unable to exec($NGINX): $!\n";
		POSIX::_exit(127);
	}

	# the pid file is written after all listening sockets are open
	if (!$self->waitforfile("$d/nginx.pid", $pid)) {
		kill 'TERM', $pid;
		_wait_exit($pid, 5) or kill 'KILL', $pid;
		my @emerg = (eval { $self->read_file('error.log') } || '')
			=~ /(\[emerg\].*)/g;
		die "Can't start nginx" . (@emerg ? ": $emerg[-1]" : '') . "\n";
	}

	$self->{_child} = $pid;
	$self->{_started} = 1;
	return $self;
}

# Reserve a free port for a test port number like 8080: that port itself
# if free, else random ones in its block of 500.  A socket of the other
# protocol stays bound to the port as a lock against parallel test runs.
sub port {
	my ($num, %opts) = @_;

	if (!defined $ports{$num}) {
		my ($lock, $probe) = $opts{udp} ? qw/ tcp udp / : qw/ udp tcp /;
		my $bind = sub {
			my ($proto, $port) = @_;
			# no SO_REUSEADDR on UDP: it would let the lock be shared
			IO::Socket::INET->new(Proto => $proto,
				LocalAddr => "127.0.0.1:$port",
				$proto eq 'tcp' ? (Listen => 1, ReuseAddr => 1) : ());
		};
		for my $try (1 .. 10) {
			my $port = $try == 1 ? $num
				: int($num / 500) * 500 + int(rand(500));
			my $sock = $bind->($lock, $port) or next;
			$bind->($probe, $port) or next;
			$ports{$num} = { port => $port, socket => $sock };
			last;
		}
		die "Port limit exceeded" unless defined $ports{$num};
	}

	return $ports{$num}{socket} if $opts{socket};
	return $ports{$num}{port};
}

# Wait up to 5 s for a file to appear; give up early if $pid exits.
sub waitforfile {
	my ($self, $file, $pid) = @_;
	my $exited;
	for (1 .. 50) {
		return 1 if -e $file;
		return 0 if $exited;
		$exited = waitpid($pid, WNOHANG) != 0 if $pid;
		select undef, undef, undef, 0.1;
	}
	return undef;
}

# Wait up to 5 s for host:port to accept connections.
sub waitforsocket {
	my ($self, $peer) = @_;
	for (1 .. 50) {
		return 1 if IO::Socket::INET->new(Proto => 'tcp', PeerAddr => $peer);
		select undef, undef, undef, 0.1;
	}
	return undef;
}

sub _nginx_pid {
	my ($self) = @_;
	my $pid = eval { $self->read_file('nginx.pid') };
	return defined $pid && $pid =~ /(\d+)/ ? $1 : $self->{_child};
}

# True once $pid is gone (reaped if it is our child); waits at most $secs.
sub _wait_exit {
	my ($pid, $secs) = @_;
	for (1 .. $secs * 10) {
		my $r = waitpid($pid, WNOHANG);
		return 1 if $r == $pid || ($r == -1 && !kill(0, $pid));
		select undef, undef, undef, 0.1;
	}
	return 0;
}

# Upstream only sends HUP.  We also wait, at most 10 s, until new workers
# have started and every old worker has logged "gracefully shutting down"
# (it closes its listening sockets right after), so new connections reach
# the new configuration only.  This reads the notice lines of the error
# log at level "debug" from %%TEST_GLOBALS%%; without them, no wait.
sub reload {
	my ($self) = @_;
	return $self unless $self->{_started};

	my $log = eval { $self->read_file('error.log') } || '';
	my %old = map { $_ => 1 } $log =~ /start worker process (\d+)/g;
	delete @old{ $log =~ /(\d+)#\d+: gracefully shutting down/g,
		$log =~ /process (\d+) exited/g };

	kill 'HUP', $self->_nginx_pid();

	for (1 .. 100) {
		last unless %old;
		select undef, undef, undef, 0.1;
		my $new = substr(eval { $self->read_file('error.log') } || '',
			length $log);
		last if $new =~ /\[emerg\]/;	# rejected: the old config stays
		next unless $new =~ /start worker process \d+/;
		delete @old{ $new =~ /(\d+)#\d+: gracefully shutting down/g,
			$new =~ /process (\d+) exited/g };
	}
	return $self;
}

# Graceful QUIT, waited for up to 90 s like upstream; then TERM and KILL
# with bounded waits, so that nothing hangs.
sub stop {
	my ($self) = @_;
	return $self unless $self->{_started};

	my $pid = $self->_nginx_pid();
	kill 'QUIT', $pid;
	_wait_exit($pid, 90)
		or (kill('TERM', $pid) && _wait_exit($pid, 10))
		or (kill('KILL', $pid) && _wait_exit($pid, 5));
	waitpid($self->{_child}, WNOHANG) if $self->{_child} != $pid;

	$self->{_started} = 0;
	return $self;
}

sub stop_daemons {
	my ($self) = @_;
	while ($self->{_daemons} && @{$self->{_daemons}}) {
		my $pid = shift @{$self->{_daemons}};
		kill 'TERM', $pid;
		_wait_exit($pid, 5) or (kill('KILL', $pid) && _wait_exit($pid, 5));
	}
	return $self;
}

# Fork a backend: a code ref called with @args, or a command to exec.
sub run_daemon {
	my ($self, $code, @args) = @_;

	my $pid = fork();
	die "Can't fork daemon: $!\n" unless defined $pid;
	if ($pid == 0) {
		if (ref $code eq 'CODE') {
			$code->(@args);
		} else {
			{ exec($code, @args); }
		}
		exit 0;
	}

	push @{$self->{_daemons}}, $pid;
	return $self;
}

sub testdir {
	my ($self) = @_;
	return $self->{_testdir};
}

sub read_file {
	my ($self, $name) = @_;
	open my $fh, '<', "$self->{_testdir}/$name"
		or die "Can't open $name: $!";
	local $/;
	return scalar <$fh>;
}

sub write_file {
	my ($self, $name, $content) = @_;
	open my $fh, '>', "$self->{_testdir}/$name"
		or die "Can't create $name: $!";
	binmode $fh;
	print $fh $content;
	close $fh;
	return $self;
}

sub write_file_expand {
	my ($self, $name, $content) = @_;

	$content =~ s/%%TEST_GLOBALS%%/$self->test_globals()/ge;
	$content =~ s/%%TEST_GLOBALS_HTTP%%/$self->test_globals_http()/ge;
	$content =~ s/%%TEST_GLOBALS_STREAM%%/$self->test_globals_stream()/ge;
	$content =~ s/%%TESTDIR%%/$self->{_testdir}/g;

	$content =~ s/127\.0\.0\.1:(8\d\d\d)/'127.0.0.1:' . port($1)/ge;
	$content =~ s/%%PORT_(\d+)%%/port($1)/ge;
	$content =~ s/%%PORT_(\d+)_UDP%%/port($1, udp => 1)/ge;

	return $self->write_file($name, $content);
}

# Like upstream: no "user" directive when running as root (workers then run
# as nobody), and no load_module lines of our own: TEST_NGINX_GLOBALS has
# to carry them.
sub test_globals {
	my ($self) = @_;
	my $d = $self->{_testdir};
	return $self->{_test_globals} //= "pid $d/nginx.pid;\n"
		. "error_log $d/error.log debug;\n"
		. ($ENV{TEST_NGINX_GLOBALS} || '');
}

sub test_globals_http {
	my ($self) = @_;
	return $self->{_test_globals_http} if defined $self->{_test_globals_http};

	my $d = $self->{_testdir};
	my $s = "root $d;\naccess_log $d/access.log;\n"
		. "client_body_temp_path $d/client_body_temp;\n";
	for my $m (qw/ fastcgi proxy uwsgi scgi /) {
		$s .= "${m}_temp_path $d/${m}_temp;\n" if $self->has_module($m);
	}
	return $self->{_test_globals_http} = $s
		. ($ENV{TEST_NGINX_GLOBALS_HTTP} || '');
}

sub test_globals_stream {
	my ($self) = @_;
	return $self->{_test_globals_stream} //=
		$ENV{TEST_NGINX_GLOBALS_STREAM} || '';
}

###############################################################################

# With TEST_NGINX_VERBOSE, traffic is printed as "# >> " / "# << " lines.
sub log_core {
	return unless $ENV{TEST_NGINX_VERBOSE};
	my ($prefix, $msg) = @_ > 1 ? @_ : ('', @_);
	$prefix .= ' ' if length $prefix;
	$msg = '' unless defined $msg;

	my $len = length $msg;
	$msg = substr($msg, 0, 2048) . "(...logged only 2048 of $len bytes)"
		if $len > 2048;
	$msg =~ s/([^\x20-\x7e\n])/sprintf('\\x%02x', ord $1)/ge;
	$msg =~ s/\n/\\x0a\n/g;
	$msg =~ s/^/# $prefix/gm;
	$msg .= "\n" unless $msg =~ /\n\z/;
	print $msg;
}

sub log_out { log_core('>>', @_) }
sub log_in { log_core('<<', @_) }

###############################################################################

# Requests end lines with a bare LF, exactly like upstream's helpers.
sub http_get($;%) {
	my ($uri, %extra) = @_;
	return http("GET $uri HTTP/1.0\nHost: localhost\n\n", %extra);
}

sub http_head($;%) {
	my ($uri, %extra) = @_;
	return http("HEAD $uri HTTP/1.0\nHost: localhost\n\n", %extra);
}

# Send a raw request and read the reply until EOF; with start => 1 return
# the socket instead, for http_end().  undef on errors and timeouts.
sub http($;%) {
	my ($request, %extra) = @_;
	my $s = http_start($request, %extra);
	return $s if $extra{start} or !defined $s;
	return http_end($s, %extra);
}

sub http_start($;%) {
	my ($request, %extra) = @_;
	my $s;

	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm(8);

		die "SSL is not supported by this harness\n" if $extra{SSL};

		# %extra last: PeerAddr and other socket options override ours
		$s = $extra{socket} || IO::Socket::INET->new(Proto => 'tcp',
			PeerAddr => '127.0.0.1:' . port(8080), %extra)
			or die "Can't connect to nginx: $!\n";

		log_out($request);
		$s->print($request);

		select undef, undef, undef, $extra{sleep} if $extra{sleep};

		if ($extra{body} && !$extra{aborted}) {
			log_out($extra{body});
			$s->print($extra{body});
		}
		alarm(0);
		1;
	};
	alarm(0);

	if (!$ok) {
		log_in("died: $@");
		return undef;
	}
	return $s;
}

sub http_end($;%) {
	my ($s) = @_;
	my $reply;

	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm(8);
		local $/;
		$reply = $s->getline();
		$s->close();
		alarm(0);
		1;
	};
	alarm(0);

	if (!$ok) {
		log_in("died: $@");
		return undef;
	}
	log_in($reply);
	return $reply;
}

# Body of a reply, de-chunked if needed; a chunked body without its last
# chunk gets "[no-last-chunk]" appended.
sub http_content {
	my ($text) = @_;
	return undef unless defined $text;

	my ($headers, $body) = $text =~ /^(.*?)\r\n?\r\n?(.*)\z/s
		or return undef;
	return $body unless $headers =~ /Transfer-Encoding: chunked/i;

	my ($content, $len) = ('', -1);
	while ($body =~ /\G\r?\n?([0-9a-f]+)\r\n?/gci) {
		$len = hex $1;
		$content .= substr($body, pos($body), $len);
		pos($body) = pos($body) + $len;
	}
	return $content . ($len != 0 ? '[no-last-chunk]' : '');
}

1;
