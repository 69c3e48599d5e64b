#!/usr/bin/perl
# Write and read sessions the way real Perl stacks do, for tests/test_perlsess.py.
#
# Reads one JSON object on stdin:
#   {"action": "write" | "read", "stack": NAME, "memcached": "host:port",
#    "redis": "host:port", "prefix": "perlsess::", "data": {...},
#    "session_id": ID (read), "compress_threshold": N, "expire": "+1h",
#    "param_expire": {"name": "+1s"}, "time_offset": SECONDS}
# and prints one JSON object: {"session_id": ...} for write, what Perl read for read.
#
# time_offset shifts Perl's clock (CORE::GLOBAL::time), so a test can ask
# CGI::Session itself whether a session has expired later on.
use strict;
use warnings;

my $time_offset;
BEGIN {
    $time_offset = 0;
    *CORE::GLOBAL::time = sub () { CORE::time() + $time_offset };
}

use FindBin;
use lib $FindBin::Bin;
use Digest::MD5 qw(md5_hex);
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Storable qw(nfreeze);

my $json = JSON::PP->new->utf8->canonical->allow_nonref;
my $request = do { local $/; $json->decode(scalar <STDIN>) };
$time_offset = $request->{time_offset} || 0;
my $prefix = defined $request->{prefix} ? $request->{prefix} : 'perlsess::';
my $stack = $request->{stack};
my $action = $request->{action};

sub new_id { md5_hex(rand() . $$ . CORE::time()) }

sub memcached {
    my (%extra) = @_;
    require Cache::Memcached;
    return Cache::Memcached->new({ servers => [ $request->{memcached} ], %extra });
}

sub memcached_fast {
    my (%extra) = @_;
    require Cache::Memcached::Fast;
    return Cache::Memcached::Fast->new({ servers => [ $request->{memcached} ], %extra });
}

sub redis {
    require Redis;
    return Redis->new(server => $request->{redis}, encoding => undef);
}

sub compression {
    my $threshold = $request->{compress_threshold};
    return defined $threshold ? (compress_threshold => $threshold) : ();
}

# CGI::Session over a client: driver kvstest (tests/perl/CGI/Session/Driver).
sub cgi_session {
    my ($handle, $id) = @_;
    require CGI::Session;
    my $session = CGI::Session->new(
        'driver:kvstest;serializer:storable;id:md5', $id,
        { Handle => $handle, Prefix => $prefix },
    ) or die CGI::Session->errstr;
    return $session;
}

sub cgi_handle {
    return $stack eq 'cgi_session_redis' ? redis() : memcached(compression());
}

# A Plack application whose session lives in Plack::Session::Store::Cache over
# Cache::Memcached; run in-process with Plack::Test, as a browser would use it.
sub plack_request {
    my ($cookie, $data) = @_;
    require Plack::Builder;
    require Plack::Test;
    require HTTP::Request::Common;
    require Plack::Session::Store::Cache;
    my $store = Plack::Session::Store::Cache->new(
        cache => memcached(namespace => $prefix, compression()),
    );
    my $seen;
    my $app = Plack::Builder::builder(sub {
        Plack::Builder::enable('Session', store => $store);
        sub {
            my $env = shift;
            my $session = $env->{'psgix.session'};
            if ($data) { $session->{$_} = $data->{$_} for keys %$data }
            $seen = { %$session };
            [ 200, [ 'Content-Type' => 'text/plain' ], [ 'ok' ] ];
        };
    });
    my $response;
    Plack::Test::test_psgi($app, sub {
        my $cb = shift;
        my $req = HTTP::Request::Common::GET('/');
        $req->header(Cookie => "plack_session=$cookie") if defined $cookie;
        $response = $cb->($req);
    });
    my ($id) = ($response->header('Set-Cookie') || '') =~ /plack_session=([^;]+)/;
    return ($id, $seen);
}

my %writers = (
    cache_memcached => sub {
        my $id = new_id();
        memcached(namespace => $prefix, compression())->set($id, $request->{data})
            or die "Cache::Memcached set failed";
        return { session_id => $id };
    },
    cache_memcached_fast => sub {
        my $id = new_id();
        memcached_fast(namespace => $prefix, utf8 => 1, compression())
            ->set($id, $request->{data}) or die "Cache::Memcached::Fast set failed";
        return { session_id => $id };
    },
    plack_memcached => sub {
        my ($id) = plack_request(undef, $request->{data});
        die "no plack_session cookie" unless $id;
        return { session_id => $id };
    },
    redis_nfreeze => sub {
        my $id = new_id();
        redis()->set($prefix . $id, nfreeze($request->{data}));
        return { session_id => $id };
    },
    redis_base64 => sub {    # Apache::Session::Serialize::Base64's format
        my $id = new_id();
        redis()->set($prefix . $id, encode_base64(nfreeze($request->{data})));
        return { session_id => $id };
    },
    redis_json => sub {    # a site whose serializer writes JSON
        my $id = new_id();
        redis()->set($prefix . $id, $json->encode($request->{data}));
        return { session_id => $id };
    },
    memcached_fast_json_text => sub {    # JSON as a character string: flag 4 (UTF-8)
        my $id = new_id();
        my $text = JSON::PP->new->canonical->encode($request->{data});
        memcached_fast(namespace => $prefix, utf8 => 1, compression())->set($id, $text)
            or die "Cache::Memcached::Fast set failed";
        return { session_id => $id };
    },
    redis_pst0_file => sub {    # a Plack::Session::Store::File file copied into Redis
        require Plack::Session::Store::File;
        my $dir = tempdir(CLEANUP => 1);
        my $id = new_id();
        Plack::Session::Store::File->new(dir => $dir)->store($id, $request->{data});
        open my $fh, '<:raw', "$dir/$id" or die "no session file: $!";
        my $bytes = do { local $/; <$fh> };
        redis()->set($prefix . $id, $bytes);
        return { session_id => $id };
    },
);
$writers{cgi_session_memcached} = $writers{cgi_session_redis} = sub {
    my $session = cgi_session(cgi_handle(), undef);
    $session->param($_, $request->{data}{$_}) for keys %{ $request->{data} };
    $session->expire($request->{expire}) if $request->{expire};
    my $param_expire = $request->{param_expire} || {};
    $session->expire($_, $param_expire->{$_}) for keys %$param_expire;
    $session->flush or die $session->errstr;
    return { session_id => $session->id };
};

my %readers = (
    cache_memcached => sub {
        my $value = memcached(namespace => $prefix)->get($request->{session_id});
        return { found => defined $value ? JSON::PP::true : JSON::PP::false,
                 ref => ref($value), data => $value };
    },
    cache_memcached_fast => sub {
        my $value = memcached_fast(namespace => $prefix)->get($request->{session_id});
        return { found => defined $value ? JSON::PP::true : JSON::PP::false,
                 ref => ref($value), data => $value };
    },
    plack_memcached => sub {
        my (undef, $seen) = plack_request($request->{session_id}, undef);
        return { data => $seen };
    },
);
$readers{cgi_session_memcached} = $readers{cgi_session_redis} = sub {
    my $session = cgi_session(cgi_handle(), $request->{session_id});
    my %params = map { $_ => $session->param($_) } $session->param;
    return {
        id         => $session->id,
        is_new     => $session->is_new ? JSON::PP::true : JSON::PP::false,
        is_expired => $session->is_expired ? JSON::PP::true : JSON::PP::false,
        data       => \%params,
    };
};

my $table = $action eq 'write' ? \%writers : \%readers;
my $run = $table->{$stack} or die "unknown $action stack $stack\n";
print $json->encode($run->());
